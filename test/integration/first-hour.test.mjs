// Issue #13 item 6, the first hour of a new user: each test names the
// fix it holds in place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT, startDaemon, makeConf, httpRequest } from './lib.mjs';

test('serve_demo no: / and /demo/* answer 404, the library is still served', async () => {
  const conf = makeConf({ global: [`client_dir ${join(ROOT, 'client')}`, 'serve_demo no'] });
  const d = await startDaemon({ conf });
  try {
    for (const path of ['/', '/index.html', '/demo/app.js']) {
      const r = await httpRequest(d, { path });
      assert.equal(r.status, 404, `${path} with serve_demo no`);
    }
    const lib = await httpRequest(d, { path: '/movex.js' });
    assert.equal(lib.status, 200);
  } finally {
    await d.stop();
  }
  // the default (and conf/movexd.conf for make run) serves it
  const d2 = await startDaemon({ conf: makeConf({ global: [`client_dir ${join(ROOT, 'client')}`] }) });
  try {
    assert.equal((await httpRequest(d2, { path: '/' })).status, 200);
  } finally {
    await d2.stop();
  }
});
