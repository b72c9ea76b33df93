// The event loop (src/server.c, docs/PERFORMANCE.md "An epoll loop through
// libuv"): by default libwebsockets runs on a libuv loop the daemon owns,
// whose Linux backend is epoll (a turn costs O(ready descriptors), not
// O(connections) as lws's poll() loop does); MOVEXD_EVLIB=poll keeps lws's
// own poll loop. The start line names the loop, and the daemon's descriptors
// show the epoll instance, so a build that silently fell back to poll fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { withDaemon, connectHello } from './lib.mjs';

function holdsEpoll(pid) {
  return readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[eventpoll]';
    } catch {
      return false; // closed meanwhile
    }
  });
}

async function roundTrip(d) {
  const c = await connectHello(d);
  try {
    const r = await c.request({ type: 'subscribe', room: 'evloop' });
    assert.equal(r.type, 'snapshot', JSON.stringify(r));
  } finally {
    c.close();
  }
}

test('by default the daemon runs on the libuv (epoll) loop: the start line says loop=uv and it holds an eventpoll descriptor', async () => {
  await withDaemon({}, async (d) => {
    assert.match(d.stderr, /event=listening .* loop=uv$/m);
    assert.ok(holdsEpoll(d.proc.pid), 'no anon_inode:[eventpoll] among the daemon\'s descriptors');
    await roundTrip(d);
  });
});

test('MOVEXD_EVLIB=poll keeps libwebsockets\' poll loop: loop=poll and no eventpoll descriptor', async () => {
  await withDaemon({ env: { MOVEXD_EVLIB: 'poll' } }, async (d) => {
    assert.match(d.stderr, /event=listening .* loop=poll$/m);
    assert.ok(!holdsEpoll(d.proc.pid), 'an eventpoll descriptor on the poll loop');
    await roundTrip(d);
  });
});
