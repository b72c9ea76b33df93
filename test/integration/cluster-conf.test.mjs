// The `cluster` conf block from the command line (issue #14): `movexd -t`
// accepts a valid block and says what it found, refuses a bad one with
// FILE:LINE. Serving in cluster mode is covered by cluster-core.test.mjs. Without the block nothing changes
// (every other test covers that).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ROOT, TIMEOUT, runDaemonToExit, withDaemon } from './lib.mjs';

function run(args) {
  const r = spawnSync(BIN, args, { cwd: ROOT, encoding: 'utf8', timeout: TIMEOUT });
  assert.equal(r.error, undefined, String(r.error));
  return r;
}

function withConf(text, fn) {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-cluster-conf-'));
  try {
    const path = join(dir, 'movexd.conf');
    writeFileSync(path, text);
    return fn(path, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const GOOD = 'listen 127.0.0.1:0\ncluster {\n  node_id n1\n  redis 127.0.0.1:6379\n}\n';

test('movexd -t accepts a cluster block and names the node', () => {
  withConf(GOOD, (path) => {
    const r = run(['-t', '-c', path]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /configuration .* is valid/);
    assert.match(r.stdout, /cluster mode: node n1, one Redis/);
  });
  withConf('cluster {\n node_id n2\n sentinels 127.0.0.1:26379,[::1]:26380\n master_name m\n}\n', (path) => {
    const r = run(['-t', '-c', path]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /cluster mode: node n2, via Sentinel/);
  });
});

test('movexd -t refuses a bad cluster block with FILE:LINE', () => {
  const cases = [
    ['cluster {\n  redis 127.0.0.1:6379\n}\n', /:1: block 'cluster': node_id is required/],
    ['cluster {\n  node_id n1\n  redis 127.0.0.1:0\n}\n', /:3: redis: .*port 0/],
    ['cluster {\n  node_id n1\n  sentinels 127.0.0.1:26379\n}\n', /:1: block 'cluster': sentinels needs master_name/],
    ['node_id n1\n', /:1: 'node_id' is a cluster setting/],
    ['cluster {\n  node_id n1\n', /:1: block 'cluster' is not closed/],
  ];
  for (const [text, want] of cases)
    withConf(text, (path) => {
      const r = run(['-t', '-c', path]);
      assert.equal(r.status, 1, `${text} => ${r.stdout}`);
      assert.match(r.stderr, want);
      assert.ok(r.stderr.includes(path), r.stderr);
    });
});

test('movexd -t checks the journal directory: usable or creatable passes (nothing made), a file in the way fails with FILE:LINE', () => {
  withConf('', (_, dir) => {
    const later = join(dir, 'not', 'yet');
    withConf(`${GOOD.replace('}\n', `  journal_dir ${later}\n}\n`)}`, (path) => {
      const r = run(['-t', '-c', path]);
      assert.equal(r.status, 0, r.stderr);
      assert.ok(r.stdout.includes(`cluster mode: node n1, one Redis, journal ${later}\n`), r.stdout);
      assert.equal(existsSync(later), false, '-t creates nothing');
    });
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    withConf(`${GOOD.replace('}\n', `  journal_dir ${join(file, 'j')}\n}\n`)}`, (path) => {
      const r = run(['-t', '-c', path]);
      assert.equal(r.status, 1, r.stdout);
      assert.match(r.stderr, /:5: journal directory .*is not a writable directory/);
      assert.ok(r.stderr.includes(path), r.stderr);
    });
    // the default, under data_dir: the data dir given on the command line
    withConf(GOOD, (path) => {
      const ok = run(['-t', '-c', path, '--data-dir', join(dir, 'data')]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.ok(ok.stdout.includes(`journal ${join(dir, 'data', 'cluster-journal-n1')}\n`), ok.stdout);
      const r = run(['-t', '-c', path, '--data-dir', join(file, 'data')]);
      assert.equal(r.status, 1, r.stdout);
      assert.match(r.stderr, /journal directory .*cluster-journal-n1/);
    });
  });
});

// What start-up refuses, -t refuses, with the same words: a journal_dir on
// proc or sysfs (root's access() calls them writable; mkdir fails there).
// Start-up stops before it listens; -t used to say "valid".
test('movexd -t refuses a journal_dir start-up would refuse (/proc, /sys) with the same message', async () => {
  for (const [jd, fs] of [['/proc/movexd-test-journal', 'proc'], ['/sys/movexd-test-journal', 'sysfs']]) {
    const conf = GOOD.replace('}\n', `  journal_dir ${jd}\n}\n`);
    const t = withConf(conf, (path) => run(['-t', '-c', path]));
    assert.equal(t.status, 1, t.stdout);
    const msg = new RegExp(`journal directory ${jd}: /\\w+ is on a ${fs} filesystem, which cannot hold files`);
    assert.match(t.stderr, msg);
    const dir = mkdtempSync(join(tmpdir(), 'movexd-cluster-conf-'));
    try {
      const r = await runDaemonToExit({ dir, conf });
      assert.equal(r.code, 1, r.stderr);
      // the line -t printed, but for the conf file's name
      const line = (s) => s.split('\n').find((l) => msg.test(l)).replace(/^.*?:\d+: /, '');
      assert.equal(line(r.stderr), line(t.stderr));
      assert.doesNotMatch(r.stderr, /event=listening/);
      assert.equal(existsSync(jd), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

// -t accepts a journal_dir whose nearest existing ancestor is writable, so
// start-up must make every missing level (it made only one level above).
test('a journal_dir three missing levels deep: -t accepts it and start-up creates it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-cluster-conf-'));
  try {
    const deep = join(dir, 'a', 'b', 'c');
    // Redis on port 1: nothing answers, the node starts and keeps retrying
    const conf = GOOD.replace('127.0.0.1:6379', '127.0.0.1:1').replace('}\n', `  journal_dir ${deep}\n}\n`);
    const t = withConf(conf, (path) => run(['-t', '-c', path]));
    assert.equal(t.status, 0, t.stderr);
    await withDaemon({ conf }, async (d) => {
      await d.waitLog(new RegExp(`event=cluster_journal dir=${deep} `));
      assert.ok(existsSync(join(deep, 'LOCK')));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// event=listening means serving: a start that fails after the port was
// bound (here: the journal directory another node holds, found when the
// cluster node starts) logs start_failed without a listening line before
// it; a start that succeeds logs listening after the rest of start-up.
test('a start that fails after binding (journal directory held by another node) never logs event=listening', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'movexd-cluster-conf-'));
  try {
    const conf = GOOD.replace('127.0.0.1:6379', '127.0.0.1:1').replace('}\n', `  journal_dir ${join(dir, 'journal')}\n}\n`);
    await withDaemon({ conf }, async (d) => {
      await d.waitLog(/event=started /);
      const log = d.stderr;
      assert.ok(log.indexOf('event=cluster_journal ') < log.indexOf('event=listening '), log);
      const r = await runDaemonToExit({ dir: join(dir, 'second'), conf });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /event=start_failed reason="cluster journal" error=".*another movexd is using this journal directory"/);
      assert.doesNotMatch(r.stderr, /event=listening|event=demo/);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
