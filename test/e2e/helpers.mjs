// End-to-end harness: the real movexd (serving the demo from client/) and
// Debian's Chromium driven headless by playwright-core. Pages come from the
// daemon itself, so Chromium's Local Network Access checks allow their
// WebSocket to ws://127.0.0.1. Nothing sleeps for a fixed time: every wait
// polls a condition with a deadline.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, makeConf, connectHello, ROOT, SLOW } from '../integration/lib.mjs';

export { ROOT };
export const CHROMIUM = process.env.MOVEX_CHROMIUM || '/usr/bin/chromium';
// As in FIELD-NOTES.md ("Chromium and Playwright here").
export const LAUNCH_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];
export const WAIT = 20000 * SLOW; // one condition
export const TEST_TIMEOUT = 120000 * SLOW; // one test
export const ARTIFACTS = join(ROOT, 'test/artifacts');

const PW_VERSION = '1.65'; // test/package-lock.json
let pw = null;
if (Number(process.versions.node.split('.')[0]) >= 20) {
  try {
    pw = await import('playwright-core');
  } catch {
    pw = null;
  }
}

// Why the e2e tests cannot run here, or null.
export function skipReason() {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install chromium, or scripts/install-deps.sh --test)`;
  if (Number(process.versions.node.split('.')[0]) < 20) return `playwright-core ${PW_VERSION} needs Node.js >= 20 (this is ${process.version})`;
  if (!pw) return 'playwright-core is not installed (cd test && npm ci, or scripts/install-deps.sh --test)';
  return null;
}

export const conf = () => makeConf({ global: [`client_dir ${join(ROOT, 'client')}`] });

// Everything one test starts, stopped by close() in reverse order.
export class Env {
  constructor(t) {
    this.t = t;
    this.browser = null;
    this.userDataDir = null;
    this.daemons = [];
    this.dir = mkdtempSync(join(tmpdir(), 'movexd-e2e-')); // conf + data, kept across restarts
    this.pageErrors = [];
    this.clients = [];
  }

  async launch() {
    // a fresh profile per test (launchPersistentContext is avoided so each
    // window can get its own context, i.e. its own localStorage)
    this.browser = await pw.chromium.launch({
      executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS, timeout: WAIT,
    });
    return this.browser;
  }

  // Start movexd on this test's data dir; `port` reuses a port (restart);
  // `confText` replaces the demo conf.
  async daemon(port = 0, confText = conf()) {
    const d = await startDaemon({ conf: confText, dir: this.dir, port });
    this.daemons.push(d);
    this.d = d;
    return d;
  }

  // A new browser window: its own context (storage), showing the demo as
  // client `client` in `room`.
  async window({ client, room, viewport = { width: 900, height: 800 }, path = '/' } = {}) {
    const context = await this.browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    this.watch(page, client);
    const q = client ? `?client=${encodeURIComponent(client)}` : '';
    await page.goto(`${this.d.http}${path}${q}#room=${encodeURIComponent(room)}`);
    await waitReady(page);
    return page;
  }

  watch(page, name) {
    page.on('pageerror', (e) => this.pageErrors.push(`${name}: ${e.message}`));
  }

  // A protocol client (package ws) to read the server's own state.
  async serverState(room) {
    const c = await connectHello(this.d, `e2e-observer-${process.pid}`);
    this.clients.push(c);
    try {
      const m = await c.request({ type: 'get', room });
      if (m.type !== 'snapshot') throw new Error(`get ${room}: ${JSON.stringify(m)}`);
      return m;
    } finally {
      await c.close();
    }
  }

  // SIGTERM every daemon still running; fails unless each exits cleanly
  // (sanitizer builds report leaks and errors through the exit status).
  async stopDaemons() {
    for (const d of this.daemons) {
      if (d.proc.exitCode === null && d.proc.signalCode === null) await d.stop();
    }
  }

  async close() {
    if (this.browser) await this.browser.close().catch(() => {}); // (twice is harmless)
    for (const d of this.daemons) {
      if (d.proc.exitCode === null && d.proc.signalCode === null) {
        try { process.kill(d.pid, 'SIGCONT'); } catch { /* gone */ }
        await d.kill('SIGKILL').catch(() => {});
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Run fn(env) with a fresh Env, or skip the test when Chromium/playwright
// are missing. Page errors fail the test, and so does a daemon that does
// not exit cleanly on SIGTERM at the end.
export async function e2e(t, fn) {
  const why = skipReason();
  if (why) {
    t.skip(why);
    return;
  }
  const env = new Env(t);
  try {
    await env.launch();
    await fn(env);
    await env.browser.close();
    await env.stopDaemons();
    if (env.pageErrors.length) throw new Error(`errors in pages:\n${env.pageErrors.join('\n')}`);
  } finally {
    await env.close();
  }
}

// ---- reading the demo's DOM ---------------------------------------------------

export async function waitReady(page) {
  await page.waitForFunction(() => window.demo && window.demo.room && window.demo.room.seq >= 0, null, { timeout: WAIT });
}

// What the page shows: status bar, seq/checksum, the list.
export function view(page) {
  return page.evaluate(() => {
    const s = document.getElementById('status');
    return {
      status: s.dataset.status,
      pending: Number(s.dataset.pending),
      statusText: document.getElementById('status-text').textContent,
      seq: document.getElementById('seq').textContent,
      checksum: document.getElementById('checksum').dataset.full || '',
      shortChecksum: document.getElementById('checksum').textContent,
      items: [...document.querySelectorAll('#items li.item')].map((li) => ({
        id: li.dataset.id,
        text: li.querySelector('label.text').textContent,
        done: li.querySelector('input.toggle').checked,
      })),
      unsaved: document.querySelectorAll('#items li.item.unsaved').length,
    };
  });
}

// Poll until check() returns a truthy value; fail with describe()'s output.
export async function until(check, what, ms = WAIT, describe = async () => '') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout (${ms} ms) waiting for ${what}\n${await describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Items of a server snapshot, in the demo's display order.
export function serverItems(state) {
  return Object.entries(state.items || {})
    .map(([id, it]) => ({ id, text: it.text, done: it.done, created: it.created }))
    .sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map(({ id, text, done }) => ({ id, text, done }));
}

// Wait until every page is online with nothing pending and shows exactly the
// server's state (seq, checksum, items); returns the server's snapshot.
export async function converged(env, pages, room, ms = WAIT) {
  let last = null;
  return until(async () => {
    const views = await Promise.all(pages.map(view));
    if (!views.every((v) => v.status === 'open' && v.pending === 0 && v.unsaved === 0)) { last = { views }; return null; }
    const snap = await env.serverState(room);
    const want = JSON.stringify(serverItems(snap.state));
    last = { views, snap: { seq: snap.seq, checksum: snap.checksum } };
    const ok = views.every((v) => v.seq === String(snap.seq) && v.checksum === snap.checksum && JSON.stringify(v.items) === want);
    return ok ? snap : null;
  }, `pages to converge on ${room}`, ms, async () => JSON.stringify(last, null, 1).slice(0, 6000));
}

// Type an item into the demo's form, as a user does.
export async function addViaUi(page, text) {
  await page.getByLabel('New item', { exact: true }).fill(text);
  await page.getByLabel('New item', { exact: true }).press('Enter');
}

export function mkArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
