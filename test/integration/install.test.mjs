// `make install` / `make uninstall` into a temporary DESTDIR with
// PREFIX=/usr: every file in place with the right mode, paths adjusted to
// PREFIX, the installed conf valid, an existing conf kept (the new one goes
// to movexd.conf.new), the man pages rendering cleanly and documenting every
// conf key, and uninstall removing everything but /etc/movexd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { BIN, ROOT, TIMEOUT } from './lib.mjs';

// The variant under test: $VARIANT, else the one MOVEXD_BIN was built as
// (build/<variant>/movexd), else release.
const VARIANT = process.env.VARIANT
  || (/^build\/([^/]+)\/movexd$/.exec(relative(ROOT, BIN)) || [])[1]
  || 'release';
const BUILT = join('build', VARIANT, 'movexd');
const PREFIX = '/usr';

// make, without the jobserver/flags of an outer make. `-o BUILT` (assume
// old): install what the test run built, never relink it from sources that
// may have changed since (the binary must exist: the tests run after the
// build).
function make(target, destdir) {
  const env = { ...process.env };
  for (const k of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES']) delete env[k];
  const r = spawnSync('make', ['--no-print-directory', '-o', BUILT, `VARIANT=${VARIANT}`, target,
    `DESTDIR=${destdir}`, `PREFIX=${PREFIX}`], { cwd: ROOT, env, encoding: 'utf8', timeout: 10 * TIMEOUT });
  assert.equal(r.error, undefined, `make ${target}: ${r.error}`);
  return r;
}

const has = (cmd) => !spawnSync('sh', ['-c', `command -v ${cmd}`]).status;
const mode = (p) => statSync(p).mode & 0o7777;
const oct = (m) => `0${m.toString(8)}`;

// Every file install must create, relative to DESTDIR, with its mode.
function expectedFiles() {
  const files = {
    [`${PREFIX}/bin/movexd`]: 0o755,
    [`${PREFIX}/bin/movexctl`]: 0o755,
    [`${PREFIX}/share/man/man1/movexctl.1`]: 0o644,
    '/lib/systemd/system/movexd.service': 0o644,
    '/lib/systemd/system/movexd.socket': 0o644,
    [`${PREFIX}/share/movexd/client/movex.js`]: 0o644,
    [`${PREFIX}/share/movexd/client/movex.d.ts`]: 0o644,
    [`${PREFIX}/share/man/man8/movexd.8`]: 0o644,
    [`${PREFIX}/share/man/man5/movexd.conf.5`]: 0o644,
    [`${PREFIX}/share/doc/movexd/README.md`]: 0o644,
  };
  for (const f of readdirSync(join(ROOT, 'docs')).filter((n) => n.endsWith('.md'))) {
    files[`${PREFIX}/share/doc/movexd/${f}`] = 0o644;
  }
  const demo = join(ROOT, 'client/demo');
  if (existsSync(demo)) {
    for (const f of readdirSync(demo, { withFileTypes: true }).filter((e) => e.isFile())) {
      files[`${PREFIX}/share/movexd/client/demo/${f.name}`] = 0o644;
    }
  }
  // The example reducers (docs/REDUCERS.md, "Examples").
  for (const f of readdirSync(join(ROOT, 'examples')).filter((n) => n.endsWith('.lua'))) {
    files[`${PREFIX}/share/movexd/examples/${f}`] = 0o644;
  }
  return files;
}

// The conf keys the parser knows: the G("key", ...) and R("key", ...) rows
// of src/config.c.
function configKeys() {
  const src = readFileSync(join(ROOT, 'src/config.c'), 'utf8');
  const keys = [...src.matchAll(/^\s*[GR]\("([a-z0-9_]+)",/gm)].map((m) => m[1]);
  assert.ok(keys.length >= 20, `found only ${keys.length} keys in src/config.c; did its table change shape?`);
  return keys;
}

// Render with man -l; returns the text, asserting no warnings.
function renderMan(path) {
  const r = spawnSync('man', ['--warnings', '-l', path], {
    encoding: 'utf8', timeout: TIMEOUT,
    env: { ...process.env, MANWIDTH: '80', MANPAGER: 'cat', PAGER: 'cat', LC_ALL: 'C.UTF-8' },
  });
  assert.equal(r.error, undefined, `man -l ${path}: ${r.error}`);
  assert.equal(r.status, 0, `man -l ${path}: exit ${r.status}; stderr:\n${r.stderr}`);
  assert.equal(r.stderr.trim(), '', `man -l ${path} printed warnings:\n${r.stderr}`);
  return r.stdout;
}

test('make install puts every file in place, adjusted to PREFIX; make uninstall removes them', (t) => {
  assert.ok(existsSync(join(ROOT, BUILT)), `${BUILT} is missing: build it first (make VARIANT=${VARIANT} all)`);
  const dest = mkdtempSync(join(tmpdir(), 'movexd-install-'));
  try {
    const r = make('install', dest);
    assert.equal(r.status, 0, `make install failed:\n${r.stdout}\n${r.stderr}`);

    // every file, with its mode
    const files = expectedFiles();
    for (const [f, m] of Object.entries(files)) {
      const p = join(dest, f);
      assert.ok(existsSync(p), `${f} was not installed`);
      assert.equal(oct(mode(p)), oct(m), `${f}: mode`);
    }
    const binary = join(dest, PREFIX, 'bin/movexd');
    assert.ok(readFileSync(binary).equals(readFileSync(join(ROOT, BUILT))), 'the installed binary is the built one');

    // the conf: 0644 or stricter, only data_dir and client_dir changed, and
    // production-safe (issue #13): no demo page, no rooms made by a typo
    const conf = join(dest, 'etc/movexd/movexd.conf');
    assert.ok(existsSync(conf), '/etc/movexd/movexd.conf was not installed');
    assert.equal(mode(conf) & 0o133, 0, `conf mode ${oct(mode(conf))} must be 0644 or stricter`);
    const confText = readFileSync(conf, 'utf8');
    const srcLines = readFileSync(join(ROOT, 'conf/movexd.conf'), 'utf8').split('\n');
    const lines = confText.split('\n');
    assert.equal(lines.length, srcLines.length, 'the installed conf has the lines of conf/movexd.conf');
    const changed = lines.filter((l, i) => l !== srcLines[i]);
    assert.deepEqual(changed.map((l) => l.trim()).sort(), [`client_dir ${PREFIX}/share/movexd/client`, 'create_on_subscribe no',
      'data_dir /var/lib/movexd', 'serve_demo no']);
    assert.ok(!/^\s*create_on_subscribe yes/m.test(confText), 'no room type creates rooms on subscribe');
    assert.ok(!existsSync(`${conf}.new`), 'no movexd.conf.new on a fresh install');

    // the installed daemon accepts the installed conf (-t checks that
    // data_dir can be used by whoever runs it: /var/lib is root's, so a
    // test run by another user points it elsewhere)
    const asUser = process.getuid() === 0 ? [] : ['--data-dir', join(dest, 'data')];
    const check = spawnSync(binary, ['-t', '-c', conf, ...asUser], { encoding: 'utf8', timeout: TIMEOUT });
    assert.equal(check.status, 0, `movexd -t -c ${conf}: ${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /is valid/);

    // the installed examples load from their installed place (absolute
    // reducer paths, as docs/REDUCERS.md says)
    const exConf = join(dest, 'examples.conf');
    writeFileSync(exConf, `data_dir ${join(dest, 'exdata')}\n`
      + `room ttt {\n  reducer lua:${join(dest, PREFIX, 'share/movexd/examples/tictactoe.lua')}\n}\n`
      + `room chat {\n  reducer lua:${join(dest, PREFIX, 'share/movexd/examples/chat.lua')}\n}\n`);
    const exCheck = spawnSync(binary, ['-t', '-c', exConf], { encoding: 'utf8', timeout: TIMEOUT });
    assert.equal(exCheck.status, 0, `movexd -t with the installed examples: ${exCheck.stdout}${exCheck.stderr}`);

    // the unit runs PREFIX/bin/movexd on the installed conf
    const unit = readFileSync(join(dest, 'lib/systemd/system/movexd.service'), 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${PREFIX}/bin/movexd -c /etc/movexd/movexd\\.conf$`, 'm'));
    assert.match(unit, new RegExp(`^ExecReload=${PREFIX}/bin/movexd -t -c /etc/movexd/movexd\\.conf$`, 'm'));
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    assert.match(unit, /^Type=notify$/m);
    assert.ok(!unit.includes('/usr/local'), 'no /usr/local left in the installed unit');

    // man pages: name PREFIX paths, render cleanly
    for (const [sect, name] of [['8', 'movexd.8'], ['5', 'movexd.conf.5'], ['1', 'movexctl.1']]) {
      const p = join(dest, PREFIX, `share/man/man${sect}`, name);
      const text = readFileSync(p, 'utf8');
      assert.ok(!text.includes('/usr/local'), `${name}: /usr/local replaced by ${PREFIX}`);
      assert.match(text, new RegExp(`^\\.TH ${name.replace(/\.\d$/, '').toUpperCase().replace('.', '\\.')} ${sect} `, 'm'), `${name}: .TH header`);
      if (has('man')) {
        const out = renderMan(p);
        assert.match(out, /^NAME$/m, `${name}: rendered NAME section`);
        assert.match(out, /^SEE ALSO$/m, `${name}: rendered SEE ALSO section`);
      } else {
        t.diagnostic(`man is not installed: checked ${name}'s roff header only`);
      }
    }

    // a second install keeps an unchanged conf as is; a modified one is
    // kept and the new default goes to movexd.conf.new
    const again = make('install', dest);
    assert.equal(again.status, 0, `second make install:\n${again.stdout}\n${again.stderr}`);
    assert.ok(!existsSync(`${conf}.new`), 'no movexd.conf.new when the conf is unchanged');
    appendFileSync(conf, 'log_level debug\n');
    const third = make('install', dest);
    assert.equal(third.status, 0, `third make install:\n${third.stdout}\n${third.stderr}`);
    assert.equal(readFileSync(conf, 'utf8'), `${confText}log_level debug\n`, 'the modified conf is kept');
    assert.equal(readFileSync(`${conf}.new`, 'utf8'), confText, 'the new default is in movexd.conf.new');
    assert.match(third.stdout + third.stderr, /movexd\.conf\.new/, 'install says where the new conf went');

    // uninstall: everything but /etc/movexd
    const u = make('uninstall', dest);
    assert.equal(u.status, 0, `make uninstall failed:\n${u.stdout}\n${u.stderr}`);
    for (const f of Object.keys(files)) assert.ok(!existsSync(join(dest, f)), `${f} is still there after uninstall`);
    for (const d of ['share/movexd', 'share/doc/movexd']) {
      assert.ok(!existsSync(join(dest, PREFIX, d)), `${PREFIX}/${d} is still there after uninstall`);
    }
    assert.ok(existsSync(conf), 'uninstall keeps /etc/movexd/movexd.conf');
    assert.match(u.stdout + u.stderr, /\/etc\/movexd/, 'uninstall says it kept /etc/movexd');
  } finally {
    rmSync(dest, { recursive: true, force: true });
  }
});

test('movexd.conf.5 documents every conf key; both man pages render cleanly from the source tree', (t) => {
  const page = readFileSync(join(ROOT, 'man/movexd.conf.5'), 'utf8');
  const missing = configKeys().filter((k) => !new RegExp(`^\\.BI? ${k}(?: |$)`, 'm').test(page));
  assert.deepEqual(missing, [], `keys of src/config.c without a '.BI key ...' entry in man/movexd.conf.5`);
  if (!has('man')) {
    t.diagnostic('man is not installed: rendering not checked');
    return;
  }
  for (const p of ['man/movexd.8', 'man/movexd.conf.5', 'man/movexctl.1']) renderMan(join(ROOT, p));
});
