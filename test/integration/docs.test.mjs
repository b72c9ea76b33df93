// The code blocks of README.md and docs/TUTORIAL.md run against a real
// daemon, so the docs cannot go stale. The convention (documented at the end
// of docs/TUTORIAL.md): blocks run in page order; ```sh in bash -e from the
// page's scratch directory with movexctl on PATH; ```js as an ES module in
// Node with ws as the global WebSocket, finishing on its own; ```html PATH
// saved as PATH, served over HTTP with the movex.js the page fetched, and
// exercised in Chromium in two windows; `norun` in the info string skips a
// block; 127.0.0.1:8080 becomes the daemon's address, 127.0.0.1:8000 the
// file server's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { BIN, ROOT, TIMEOUT, startDaemon } from './lib.mjs';

const WS_MODULE = join(ROOT, 'test/node_modules/ws/index.js');
const CHROMIUM = process.env.MOVEX_CHROMIUM || '/usr/bin/chromium';
const PW = join(ROOT, 'test/node_modules/playwright-core/index.mjs');

// Fenced blocks: {lang, words (the rest of the info string), text, line}.
function codeBlocks(markdown) {
  const out = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    // a fence is 3+ backticks and an info string without backticks (as in
    // CommonMark: a line starting with an inline ```` `code` ```` span is not one)
    const m = /^(`{3,})([^`\s]*)\s*([^`]*)$/.exec(lines[i]);
    if (!m) continue;
    const end = closeOf(lines, i, m[1].length);
    if (!m[2]) { i = end; continue; }
    out.push({ lang: m[2], words: m[3].split(/\s+/).filter(Boolean), text: lines.slice(i + 1, end).join('\n'), line: i + 1 });
    i = end;
  }
  return out;
}
function closeOf(lines, i, ticks = 3) {
  for (let j = i + 1; j < lines.length; j++) {
    const m = /^(`{3,})\s*$/.exec(lines[j]);
    if (m && m[1].length >= ticks) return j;
  }
  throw new Error(`unclosed code block at line ${i + 1}`);
}

// A step here is a process start (bash, node, Chromium) or a page action
// in Chromium: on an idle machine the whole tutorial takes ~4 s, but at load
// 19 on two cores (where this test failed) a Chromium launch or page load
// can take longer than the harness's TIMEOUT (10 s, already scaled for
// sanitizer builds), so every step gets 3x that. They only bound a hang;
// nothing waits for them.
const STEP_TIMEOUT = 3 * TIMEOUT;

const runnable = (b) => ['sh', 'js', 'html'].includes(b.lang) && !b.words.includes('norun');

function run(cmd, args, { cwd, env, input } = {}) {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', rej);
    const t = setTimeout(() => { p.kill('SIGKILL'); rej(new Error(`${cmd} timed out; stdout:\n${out}\nstderr:\n${err}`)); }, STEP_TIMEOUT);
    p.on('close', (code) => { clearTimeout(t); res({ code, out, err }); });
    // a block that does not read its stdin may exit before this write
    // (EPIPE, seen at load 18); its exit code says whether it worked
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

// A static file server for a scratch directory (what `python3 -m
// http.server` does in the tutorial).
async function fileServer(root) {
  const types = { '.html': 'text/html', '.js': 'text/javascript' };
  const srv = createServer((req, res) => {
    let p = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (p === '/favicon.ico') { res.writeHead(204).end(); return; } // browsers ask; not the page's fault
    if (p.endsWith('/')) p += 'index.html';
    const f = join(root, p);
    if (!f.startsWith(root) || !existsSync(f)) { res.writeHead(404).end('not found'); return; }
    res.writeHead(200, { 'Content-Type': types[extname(f)] || 'application/octet-stream' }).end(readFileSync(f));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, close: () => new Promise((r) => srv.close(r)) };
}

// What the test does with each tutorial page, in two windows.
const PAGE_CHECKS = {
  'counter/index.html': async (a, b) => {
    await a.locator('#plus:enabled').waitFor();
    await b.locator('#plus:enabled').waitFor();
    const start = Number(await b.locator('#count').textContent());
    await a.click('#plus');
    await a.click('#plus');
    await b.locator('#count', { hasText: String(start + 2) }).waitFor();
    assert.equal(await a.locator('#status').textContent(), 'open');
  },
  'todo/index.html': async (a, b) => {
    await a.locator('#add button:enabled').waitFor(); // joined, handlers in place
    await b.locator('#add button:enabled').waitFor();
    await a.fill('#text', 'milk');
    await a.press('#text', 'Enter');
    await b.getByLabel('Done: milk').waitFor();
    await b.getByLabel('Done: milk').check();
    await a.locator('input[aria-label="Done: milk"]:checked').waitFor();
    await a.getByLabel('Delete milk').click();
    await b.getByLabel('Done: milk').waitFor({ state: 'detached' });
    assert.equal(await a.locator('#problem').textContent(), '');
  },
};

async function launchBrowser() {
  const { chromium } = await import(PW);
  return chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: STEP_TIMEOUT,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

async function runPage(file, t) {
  const blocks = codeBlocks(readFileSync(join(ROOT, file), 'utf8')).filter(runnable);
  assert.ok(blocks.length > 0, `${file}: no runnable blocks`);
  // the development conf, as `make run` uses it, on a free port
  const conf = readFileSync(join(ROOT, 'conf/movexd.conf'), 'utf8')
    .replace(/^client_dir .*$/m, `client_dir ${join(ROOT, 'client')}`);
  const d = await startDaemon({ conf });
  const scratch = mkdtempSync(join(tmpdir(), 'movexd-docs-'));
  const files = await fileServer(scratch);
  const addr = (s) => s.replaceAll('127.0.0.1:8080', `127.0.0.1:${d.port}`).replaceAll('127.0.0.1:8000', `127.0.0.1:${files.port}`);
  const env = { PATH: `${dirname(BIN)}:${process.env.PATH}`, MOVEX_URL: d.url };
  const preload = join(scratch, '.ws-global.mjs');
  writeFileSync(preload, `import WebSocket from ${JSON.stringify(WS_MODULE)};\nglobalThis.WebSocket = WebSocket;\n`);
  let browser = null;
  try {
    for (const b of blocks) {
      const where = `${file}:${b.line}`;
      if (b.lang === 'sh') {
        const r = await run('bash', ['-e', '-o', 'pipefail', '-c', addr(b.text)], { cwd: scratch, env });
        assert.equal(r.code, 0, `${where} (sh) failed:\n${r.out}\n${r.err}`);
      } else if (b.lang === 'js') {
        const f = join(scratch, `block-${b.line}.mjs`);
        writeFileSync(f, addr(b.text));
        const r = await run(process.execPath, ['--import', preload, f], { cwd: scratch, env });
        assert.equal(r.code, 0, `${where} (js) failed:\n${r.out}\n${r.err}`);
        assert.equal(r.err, '', `${where} (js) wrote to stderr`);
      } else {
        const path = b.words[0];
        assert.ok(path && PAGE_CHECKS[path], `${where}: an html block needs a PATH this test knows how to exercise`);
        mkdirSync(dirname(join(scratch, path)), { recursive: true });
        writeFileSync(join(scratch, path), addr(b.text));
        if (!existsSync(CHROMIUM)) { t.diagnostic(`${where}: no Chromium, page not opened`); continue; }
        browser ??= await launchBrowser();
        const pages = [];
        const problems = [];
        for (let i = 0; i < 2; i++) {
          const ctx = await browser.newContext(); // two windows = two clients
          const p = await ctx.newPage();
          p.setDefaultTimeout(STEP_TIMEOUT);
          p.on('pageerror', (e) => problems.push(`${where} window ${i}: ${e.message}`));
          p.on('console', (m) => { if (m.type() === 'error') problems.push(`${where} window ${i}: console: ${m.text()}`); });
          await p.goto(`http://127.0.0.1:${files.port}/${dirname(path)}/`);
          pages.push(p);
        }
        await PAGE_CHECKS[path](...pages);
        assert.deepEqual(problems, []);
        for (const p of pages) await p.context().close();
      }
    }
  } finally {
    if (browser) await browser.close();
    await files.close();
    await d.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

test('codeBlocks reads fences, info strings and norun', () => {
  const bs = codeBlocks('a\n```sh norun\nmake run\n```\n```\nplain\n```\n```` ```sh ```` is inline code\n```html x/index.html\n<p>\n```\n');
  assert.deepEqual(bs.map((b) => [b.lang, b.words, b.text, runnable(b)]),
    [['sh', ['norun'], 'make run', false], ['html', ['x/index.html'], '<p>', true]]);
});

test('README.md code blocks run', { timeout: 4 * STEP_TIMEOUT }, (t) => runPage('README.md', t));
test('docs/TUTORIAL.md code blocks run, and its pages work in two windows', { timeout: 12 * STEP_TIMEOUT }, (t) => runPage('docs/TUTORIAL.md', t));
