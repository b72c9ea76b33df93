// split.html: the demo twice, side by side, as two separate clients of one
// room. URL: /demo/split.html?left=NAME&right=NAME#room=todo:demo
const ROOM_RE = /^[A-Za-z0-9_.:-]{1,200}$/;
const CLIENT_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;

const params = new URLSearchParams(location.search);
const hashRoom = new URLSearchParams(location.hash.slice(1)).get('room');
const room = hashRoom && ROOM_RE.test(hashRoom) ? hashRoom : 'todo:demo';
const pick = (name, fallback) => {
  const v = params.get(name);
  return v && CLIENT_RE.test(v) ? v : fallback;
};

document.getElementById('split-room').textContent = `room ${room}`;
for (const [side, fallback] of [['left', 'alice'], ['right', 'bob']]) {
  const client = pick(side, fallback);
  const frame = document.getElementById(side);
  frame.title = `Client ${client}`;
  document.getElementById(`${side}-caption`).textContent = `client ${client}`;
  frame.src = `/?client=${encodeURIComponent(client)}#room=${encodeURIComponent(room)}`;
}
