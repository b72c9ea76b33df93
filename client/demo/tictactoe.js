// Tic-tac-toe on a Lua reducer (examples/tictactoe.lua): the page only sends
// intentions ({type: "join" | "move" | "reset"}); the server checks turns,
// squares and wins and answers with effects. A move is predicted locally so
// the mark shows at once (dimmed until the server confirms it).
//
// URL: /demo/tictactoe.html?client=NAME#room=ttt:demo
import { connect } from '/movex.js';

const params = new URLSearchParams(location.search);
const hashRoom = new URLSearchParams(location.hash.slice(1)).get('room');
const roomName = hashRoom && /^ttt:[A-Za-z0-9_.:-]{1,190}$/.test(hashRoom) ? hashRoom : 'ttt:demo';
const clientParam = params.get('client');
const $ = (id) => document.getElementById(id);

const squares = [];
for (let i = 0; i < 9; i++) {
  const b = document.createElement('button');
  b.type = 'button';
  b.setAttribute('aria-label', `square ${i}`);
  b.addEventListener('click', () => act({ type: 'move', payload: { square: i } }));
  $('board').append(b);
  squares.push(b);
}
$('room').textContent = roomName;

let noticeTimer = null;
function notice(text) {
  $('notice').textContent = text;
  $('notice').hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $('notice').hidden = true; }, 5000);
}

const conn = connect(params.get('server') || `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`, {
  ...(clientParam ? { client: clientParam } : {}),
  clientLock: 'wait',
  // what the server will most likely do with our move: our mark, then the
  // other player's turn (a win is only shown once the server says so)
  predict: {
    move: (state, action) => {
      const sq = action.payload.square;
      if (!state || state.winner !== null || state.board[sq] !== '') return null;
      return [{ op: 'replace', path: `/board/${sq}`, value: state.turn },
        { op: 'replace', path: '/turn', value: state.turn === 'X' ? 'O' : 'X' }];
    },
  },
});
let room = null;

function myMark(state) {
  if (!state || !state.players) return null;
  if (state.players.X === conn.client) return 'X';
  if (state.players.O === conn.client) return 'O';
  return null;
}

function render() {
  const s = room && room.state;
  const confirmed = room && room.confirmedState;
  $('status').dataset.status = conn.status;
  $('status-text').textContent = conn.status === 'open' ? (room && room.pendingCount ? 'Online · waiting for the server…' : 'Online') : conn.status;
  $('client').textContent = conn.client || '–';
  $('seq').textContent = room ? String(room.seq) : '–';
  if (!s || !Array.isArray(s.board)) return;
  const mine = myMark(s);
  for (let i = 0; i < 9; i++) {
    squares[i].textContent = s.board[i] || '';
    squares[i].dataset.pending = String(!!confirmed && confirmed.board[i] !== s.board[i]);
    squares[i].disabled = !mine || s.winner !== null || s.board[i] !== '' || s.turn !== mine;
  }
  const p = s.players || {};
  $('players').textContent = `X: ${p.X || 'free'} · O: ${p.O || 'free'}`;
  $('turn').textContent = s.winner === 'draw' ? 'Draw.' : s.winner ? `${s.winner} wins!` : `${s.turn} to move${mine === s.turn ? ' (you)' : ''}.`;
  $('join').disabled = !!mine || (!!p.X && !!p.O);
  $('reset').disabled = !mine || s.winner === null;
}

function act(action) {
  if (!room) return;
  room.dispatch(action, { dep: false }).catch(() => {}); // rejects arrive as "reject" events
  render();
}

$('join').addEventListener('click', () => act({ type: 'join' }));
$('reset').addEventListener('click', () => act({ type: 'reset' }));
conn.on('status', render);
conn.join(roomName).then((r) => {
  room = r;
  window.ttt = { conn, room: r };
  r.subscribe(render);
  r.on('change', render);
  r.on('reject', (e) => notice(`${e.code}: ${e.message}`));
  render();
}, (e) => {
  $('status-text').textContent = `Cannot join ${roomName}: ${e.code || ''} ${e.message}`;
  $('players').textContent = 'Is a room type "ttt" with the tictactoe.lua reducer configured?';
});
