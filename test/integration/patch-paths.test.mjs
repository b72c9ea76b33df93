// The three ways an action's patch reaches a json room give the same
// result, byte for byte. Since Step 11 (docs/PERFORMANCE.md) a compact
// action {"type":"patch","payload":[...]} is read straight from the message
// bytes (a patch view, no jansson tree) and its log entry copies the
// client's text; the same action with a space in it is read as a view but
// applied from a tree (its text is not the entry's), and one with a \u
// escape is parsed by jansson alone. Each case goes to three rooms, one path
// each: the replies, the fwds (the log entry as it goes out), the sync
// history and the state after a restart (snapshot and WAL) must be the same
// but for the room's name. A difference is a case where the fast path
// decides, logs or answers otherwise than jansson would have.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startDaemon, makeConf, withTimeout, TIMEOUT } from './lib.mjs';

const ROOMS = { view: 'pv', tree: 'pt', jansson: 'pj' }; // same length: a plain rename
const INIT = '{"a":1,"s":"x","arr":[1,2],"o":{"k":"v"},"n":1e300,"a/b":[],"m~n":{"":0}}';

// The action text for one path, from the compact text of the view path.
function variant(path, text) {
  if (path === 'view') return text;
  if (path === 'tree') return `{ ${text.slice(1)}`; // whitespace: not the entry's text
  return text.replace('"type":"patch"', '"type":"p\\u0061tch"'); // \u: jansson's alone
}

// Edge cases, compact (so the view path really is the view path).
function cases() {
  const P = (ops) => `{"type":"patch","payload":[${ops}]}`;
  const c = [];
  const values = ['0', '-0', '-1', '1.5', '1E2', '1e-400', '123456789012345', '1234567890123456', '12345678901234567890',
    '9007199254740993', '0.1', '-0.0', '1.0', '1e308', '"\\/"', '"\\n\\t\\"\\\\"', '"é€𝄞"', '"\\ud83d\\ude00"', 'true', 'null',
    '[]', '{}', '[1,[2,[3]]]', '{"b":1,"a":{"c":[]}}', '{"x":1,"x":2}', `"${'x'.repeat(3000)}"`];
  for (const v of values) {
    c.push(P(`{"op":"add","path":"/v","value":${v}}`));
    c.push(P(`{"op":"test","path":"/v","value":${v}}`));
    c.push(P(`{"op":"inc","path":"/a","value":${v}}`));
  }
  for (const p of ['"/a"', '""', '"/"', '"a"', '"/\\/"', '"/a~1b/-"', '"/arr/-"', '"/arr/01"', '"/arr/9"', '"/m~0n/"',
    '"/~2"', '"/o/k/x"', '1', 'null']) {
    c.push(P(`{"op":"add","path":${p},"value":1}`));
    c.push(P(`{"op":"remove","path":${p}}`));
    c.push(P(`{"op":"move","from":${p},"path":"/mv"}`));
    c.push(P(`{"op":"copy","path":${p},"from":"/arr"}`));
    c.push(P(`{"op":"replace","path":${p},"value":{"r":${p}}}`));
  }
  c.push('{"payload":[{"value":3,"path":"/z","op":"add"}],"type":"patch"}', P(''), P('{}'), P('1'), P('[]'), P('null'),
    '{"type":"patch","payload":{}}', '{"type":"patch"}', '{"type":"set","payload":[]}', '{"type":"patch","payload":[],"x":1}',
    P('{"op":"add","path":"/a","value":1,"extra":1}'), P('{"op":"add","op":"remove","path":"/a"}'),
    P('{"op":"add","path":"/a","value":1,"value":2}'), P('{"op":1,"path":"/a"}'), P('{"op":"ADD","path":"/a","value":1}'),
    P('{"op":"r","path":"/a"}'), P('{"op":"","path":"/a"}'), P('{"op":"inc","path":"/a"}'), P('{"op":"add","path":"/a"}'),
    P('{"op":"add","path":"/a","from":5,"value":1}'), P('{"op":"inc","path":"/n","value":1e300}'),
    P(Array.from({ length: 80 }, (_, i) => `{"op":"add","path":"/k${i}","value":${i}}`).join(',')),
    P(Array.from({ length: 30 }, (_, i) => `{"op":"add","path":"/${'y'.repeat(300)}${i}","value":"${'z'.repeat(i)}"}`).join(',')),
    P(`{"op":"add","path":"/deep","value":${'['.repeat(40)}${']'.repeat(40)}}`),
    P('{"op":"add","path":"/t","value":1},{"op":"remove","path":"/s"},{"op":"remove","path":"/nope"}'),
    P('{"op":"replace","path":"","value":{"all":"new"}},{"op":"test","path":"/all","value":"old"}'));
  // seeded random patches over the same few paths and values
  let seed = 12;
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const nums = ['0', '-0', '1', '-1', '2.5', '1e3', '1E-3', '123456789012345678', '0.30000000000000004', '1e308'];
  const strs = ['"a"', '""', '"\\/"', '"\\n"', '"é"', '"\\"q"', '"x\\\\y"', '"~1"'];
  const val = (d) => {
    const r = rnd();
    if (d > 3 || r < 0.4) return pick(nums);
    if (r < 0.6) return pick(strs);
    if (r < 0.65) return pick(['true', 'false', 'null']);
    if (r < 0.82) return `[${Array.from({ length: Math.floor(rnd() * 3) }, () => val(d + 1)).join(',')}]`;
    return `{${[...new Set(Array.from({ length: Math.floor(rnd() * 3) }, () => pick(['a', 'b', '', 'k/m'])))].map((k) => `"${k}":${val(d + 1)}`).join(',')}}`;
  };
  const paths = ['"/a"', '"/s"', '"/arr/0"', '"/arr/-"', '"/arr/3"', '"/o"', '"/o/k"', '"/n"', '"/x"', '"/a~1b"', '"/m~0n"', '""', '"/arr/1"'];
  const ops = ['"add"', '"remove"', '"replace"', '"move"', '"copy"', '"test"', '"inc"', '"inc"', '"add"'];
  for (let i = 0; i < 300; i++) {
    const list = Array.from({ length: Math.floor(rnd() * 4) }, () => {
      const o = pick(ops);
      const m = [`"op":${o}`, `"path":${pick(paths)}`];
      if (/move|copy/.test(o) || rnd() < 0.1) m.push(`"from":${pick(paths)}`);
      if (rnd() < 0.9) m.push(`"value":${o === '"inc"' && rnd() < 0.8 ? pick(nums) : val(0)}`);
      if (rnd() < 0.3) m.reverse();
      return `{${m.join(',')}}`;
    });
    c.push(P(list.join(',')));
  }
  return c;
}

// A WebSocket whose messages are kept as the text that came.
async function rawClient(d) {
  const ws = new WebSocket(d.url, ['movex.v1']);
  const msgs = [];
  let wake = () => {};
  ws.on('message', (m) => { msgs.push(String(m)); wake(); });
  ws.on('error', () => {});
  await withTimeout(new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); }), TIMEOUT, 'connect');
  return {
    send: (t) => ws.send(t),
    // the first kept message matching pred, taken out
    take(pred, what) {
      return withTimeout(new Promise((res) => {
        const look = () => {
          const i = msgs.findIndex(pred);
          if (i < 0) return;
          wake = () => {};
          res(msgs.splice(i, 1)[0]);
        };
        wake = look;
        look();
      }), TIMEOUT, what);
    },
    close: () => new Promise((res) => { ws.once('close', res); ws.close(); }),
  };
}

const byId = (id) => (m) => m.startsWith('{') && m.includes(`"id":${id},`);

async function hello(d, client) {
  const c = await rawClient(d);
  c.send(`{"type":"hello","id":1,"client":"${client}"}`);
  assert.match(await c.take(byId(1), 'welcome'), /"type":"welcome"/);
  return c;
}

test('a patch read as a view, from a tree and by jansson: same replies, log entries, history and state', async () => {
  const all = cases();
  const d = await startDaemon({ conf: makeConf({ global: ['fsync always'], room: ['history 10000'] }), keepDir: true });
  let d2;
  try {
    const c = await hello(d, 'pp');
    const obs = await hello(d, 'ppobs');
    let id = 10;
    for (const room of Object.values(ROOMS)) {
      c.send(`{"type":"create","id":${++id},"room":"${room}","state":${INIT}}`);
      assert.match(await c.take(byId(id), 'created'), /"type":"created"/);
      for (const x of [c, obs]) {
        x.send(`{"type":"subscribe","id":${++id},"room":"${room}"}`);
        assert.match(await x.take(byId(id), 'snapshot'), /"type":"snapshot"/);
      }
    }
    const seen = { view: [], tree: [], jansson: [] };
    let acks = 0;
    for (let n = 1; n <= all.length; n++) {
      for (const [path, room] of Object.entries(ROOMS)) {
        const rid = ++id;
        c.send(`{"type":"action","room":"${room}","n":${n},"id":${rid},"action":${variant(path, all[n - 1])}}`);
        const reply = await c.take(byId(rid), `reply to case ${n}`);
        const out = [reply.replace(`"id":${rid},`, '')];
        if (reply.includes('"type":"ack"')) {
          out.push(await obs.take((m) => m.includes('"type":"fwd"') && m.includes(`"room":"${room}"`), `fwd of case ${n}`));
          if (path === 'view') acks++;
        }
        // the variants' texts differ in length: a JSON error's byte offset too
        seen[path].push(out.map((t) => t.replaceAll(`"room":"${room}"`, '"room":"R"').replace(/at byte \d+/, 'at byte N')));
      }
      const [v, t, j] = [seen.view, seen.tree, seen.jansson].map((s) => JSON.stringify(s[n - 1]));
      assert.equal(t, v, `case ${n} ${all[n - 1].slice(0, 200)}: tree path vs view`);
      assert.equal(j, v, `case ${n} ${all[n - 1].slice(0, 200)}: jansson vs view`);
    }
    assert.ok(acks > 100 && acks < all.length - 50, `both acks and rejects were exercised (${acks} acks of ${all.length})`);
    // the whole history and the state, as one room's
    const history = async (x, d0, room) => {
      x.send(`{"type":"sync","id":${++id},"room":"${room}","since":{"seq":0,"checksum":"${'0'.repeat(32)}"}}`);
      const s = await x.take(byId(id), 'sync');
      x.send(`{"type":"get","id":${++id},"room":"${room}"}`);
      const g = await x.take(byId(id), 'get');
      return [s, g].map((m) => m.replace(/"id":\d+,/, '').replaceAll(`"room":"${room}"`, '"room":"R"'));
    };
    const before = {};
    for (const [path, room] of Object.entries(ROOMS)) before[path] = await history(c, d, room);
    assert.equal(before.tree.join('\n'), before.view.join('\n'), 'history and state: tree path vs view');
    assert.equal(before.jansson.join('\n'), before.view.join('\n'), 'history and state: jansson vs view');
    await c.close();
    await obs.close();
    await d.stop();
    // from the disk: the snapshots and the WAL hold the same for all three
    d2 = await startDaemon({ conf: makeConf({ global: ['fsync always'], room: ['history 10000'] }), dir: d.dir });
    const c2 = await hello(d2, 'pp');
    for (const [path, room] of Object.entries(ROOMS)) {
      assert.deepEqual((await history(c2, d2, room))[1], before[path][1], `${path}: the state after a restart`);
    }
    await c2.close();
  } finally {
    if (d2) await d2.stop().catch(() => {});
    else await d.stop().catch(() => {});
    d.cleanup();
  }
});
