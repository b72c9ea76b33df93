// The movex demo: a shared todo board. Every window showing the same room
// sees every change live; edits made while the server is unreachable stay
// queued (in localStorage) and are sent when it comes back.
//
// State of a room: { items: { <id>: { text, done, created } } }. Items are
// keyed by a random id, not stored in an array: concurrent edits from other
// windows then never shift an index under an operation (a JSON Patch on
// /items/3 could hit another item than the one the user clicked).
//
// URL: /?client=NAME#room=todo:demo
//   #room=…   the room (default todo:demo)
//   ?client=… this window's client id (default: one chosen and persisted by
//             movex.js, one per open tab)
//   ?server=… the WebSocket URL (default: /ws on the page's own host)

import { connect } from '/movex.js';

const DEFAULT_ROOM = 'todo:demo';
const ROOM_RE = /^[A-Za-z0-9_.:-]{1,200}$/;
const CLIENT_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
const OFFLINE_AFTER_MS = 3000; // reconnecting this long counts as offline

const $ = (id) => document.getElementById(id);
const el = {
  status: $('status'), statusText: $('status-text'),
  roomForm: $('room-form'), roomInput: $('room-input'),
  addForm: $('add-form'), newItem: $('new-item'), addButton: $('add-button'),
  items: $('items'), empty: $('empty'), count: $('count'), clearDone: $('clear-done'),
  notice: $('notice'), seq: $('seq'), checksum: $('checksum'), client: $('client'),
  splitLink: $('split-link'), failures: $('failures'), failuresList: $('failures-list'),
  failuresClear: $('failures-clear'), presence: $('presence'),
};

// ---- where to connect -------------------------------------------------------

const params = new URLSearchParams(location.search);

function roomFromHash() {
  const name = new URLSearchParams(location.hash.slice(1)).get('room');
  return name && ROOM_RE.test(name) && name[0] !== ':' ? name : DEFAULT_ROOM;
}

function serverUrl() {
  const given = params.get('server');
  if (given) return given;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

const roomName = roomFromHash();
const clientParam = params.get('client');
const clientId = clientParam && CLIENT_RE.test(clientParam) ? clientParam : undefined;

// A different room: reload, so this window holds one connection and one room.
window.addEventListener('hashchange', () => {
  if (roomFromHash() !== roomName) location.reload();
});

// ---- status bar -------------------------------------------------------------

let conn = null;
let room = null;
let reconnectingSince = 0;
let offlineTimer = null; // turns "Reconnecting" into "Offline" after OFFLINE_AFTER_MS
let noticeTimer = null;
let waitingTimer = null; // a notice when the client id stays taken

function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

function connectionState() {
  if (!conn) return 'connecting';
  if (conn.status === 'offline') return 'offline'; // the browser says so (movex.js listens)
  if (conn.status === 'reconnecting') {
    if (navigator.onLine === false) return 'offline';
    if (reconnectingSince && Date.now() - reconnectingSince >= OFFLINE_AFTER_MS) return 'offline';
  }
  return conn.status; // waiting | connecting | open | reconnecting | closed
}

function refreshStatus() {
  const state = connectionState();
  const pending = room ? room.pendingCount : 0;
  const waiting = pending ? ` · ${plural(pending, 'change', 'changes')} waiting` : '';
  let text;
  switch (state) {
    case 'open':
      text = pending ? `Online · saving ${plural(pending, 'change', 'changes')}…` : 'Online · all changes saved';
      if (room && room.status !== 'live' && room.status !== 'syncing') text = 'Online · joining room…';
      break;
    case 'connecting': text = `Connecting…${waiting}`; break;
    case 'reconnecting': text = `Reconnecting…${waiting}`; break;
    case 'offline': text = `Offline — retrying${waiting}`; break;
    case 'waiting': text = `Waiting: client ${conn.client} is open in another tab`; break;
    default: text = `Disconnected${waiting}`;
  }
  if (el.status.dataset.status !== state) el.status.dataset.status = state;
  if (el.status.dataset.pending !== String(pending)) el.status.dataset.pending = String(pending);
  if (el.statusText.textContent !== text) el.statusText.textContent = text;

  const seq = room && room.seq >= 0 ? String(room.seq) : '–';
  if (el.seq.textContent !== seq) el.seq.textContent = seq;
  const sum = room && room.checksum ? room.checksum : '';
  if (el.checksum.dataset.full !== sum) {
    el.checksum.dataset.full = sum;
    el.checksum.textContent = sum ? sum.slice(0, 8) : '–';
    el.checksum.title = sum ? `checksum of the confirmed state: ${sum}` : '';
  }
  if (conn && conn.client && el.client.textContent !== conn.client) el.client.textContent = conn.client;
}

function notice(text) {
  el.notice.textContent = text;
  el.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.notice.hidden = true; }, 6000);
}

// ---- the list ---------------------------------------------------------------

const rows = new Map(); // id -> { li, toggle, label, renameBtn, deleteBtn, editing }

function itemsOf(state) {
  const items = state && typeof state === 'object' && !Array.isArray(state) ? state.items : undefined;
  return items && typeof items === 'object' && !Array.isArray(items) ? items : null;
}

function sortedItems(state) {
  const items = itemsOf(state) || {};
  return Object.entries(items)
    .filter(([, it]) => it && typeof it === 'object')
    .map(([id, it]) => ({ id, text: String(it.text ?? ''), done: !!it.done, created: Number(it.created) || 0, raw: it }))
    .sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function makeRow(id) {
  const li = document.createElement('li');
  li.className = 'item';
  li.dataset.id = id;
  const toggle = document.createElement('input');
  toggle.type = 'checkbox';
  toggle.className = 'toggle';
  toggle.id = `done-${id}`;
  const label = document.createElement('label');
  label.className = 'text';
  label.htmlFor = toggle.id;
  const renameBtn = document.createElement('button');
  renameBtn.type = 'button';
  renameBtn.className = 'rename secondary';
  renameBtn.textContent = 'Rename';
  const deleteBtn = document.createElement('button');
  deleteBtn.type = 'button';
  deleteBtn.className = 'delete danger';
  deleteBtn.textContent = 'Delete';
  const editors = document.createElement('span');
  editors.className = 'editors';
  li.append(toggle, label, editors, renameBtn, deleteBtn);

  const row = { li, toggle, label, editors, renameBtn, deleteBtn, editing: null, item: null };
  toggle.addEventListener('change', () => setDone(id, toggle.checked));
  renameBtn.addEventListener('click', () => startEdit(row));
  deleteBtn.addEventListener('click', () => removeItem(id));
  label.addEventListener('dblclick', (e) => { e.preventDefault(); startEdit(row); });
  return row;
}

function updateRow(row, item, saved) {
  row.item = item;
  row.li.classList.toggle('unsaved', !saved);
  if (saved) row.li.removeAttribute('title'); else row.li.title = 'Not saved on the server yet';
  if (row.label.textContent !== item.text) row.label.textContent = item.text;
  if (row.toggle.checked !== item.done) row.toggle.checked = item.done;
  row.li.classList.toggle('done', item.done);
  row.toggle.setAttribute('aria-label', `Done: ${item.text}`);
  row.renameBtn.setAttribute('aria-label', `Rename “${item.text}”`);
  row.deleteBtn.setAttribute('aria-label', `Delete “${item.text}”`);
}

function startEdit(row) {
  if (row.editing || !row.item) return;
  const id = row.li.dataset.id;
  const form = document.createElement('form');
  form.className = 'edit';
  const input = document.createElement('input');
  input.type = 'text';
  input.maxLength = 200;
  input.value = row.item.text;
  input.required = true;
  input.setAttribute('aria-label', `New text for “${row.item.text}”`);
  const save = document.createElement('button');
  save.type = 'submit';
  save.textContent = 'Save';
  form.append(input, save);
  row.editing = form;
  showPresence({ editing: id });
  row.label.hidden = true;
  row.renameBtn.hidden = true;
  row.label.after(form);
  input.focus();
  input.select();
  const finish = (commit) => {
    if (row.editing !== form) return;
    row.editing = null;
    showPresence({ editing: null });
    const text = input.value.trim();
    form.remove();
    row.label.hidden = false;
    row.renameBtn.hidden = false;
    if (commit && text && row.item && text !== row.item.text) renameItem(id, text);
    render(room.state);
    row.renameBtn.focus();
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); finish(true); });
  input.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); finish(false); } });
  form.addEventListener('focusout', (e) => { if (!form.contains(e.relatedTarget)) finish(true); });
}

let renderedConfirmed;

function render(state) {
  const list = sortedItems(state);
  // States share every unchanged subtree, so an item that is not the very
  // object of the confirmed state has a change of ours still pending.
  renderedConfirmed = room ? room.confirmedState : undefined;
  const confirmed = (room && itemsOf(room.confirmedState)) || {};
  const seen = new Set();
  let prev = null;
  for (const item of list) {
    seen.add(item.id);
    let row = rows.get(item.id);
    if (!row) { row = makeRow(item.id); rows.set(item.id, row); }
    updateRow(row, item, Object.prototype.hasOwnProperty.call(confirmed, item.id) && confirmed[item.id] === item.raw);
    // keep DOM order = sorted order, moving only what is out of place
    const want = prev ? prev.nextSibling : el.items.firstChild;
    if (want !== row.li) el.items.insertBefore(row.li, want);
    prev = row.li;
  }
  for (const [id, row] of rows) {
    if (!seen.has(id)) { row.li.remove(); rows.delete(id); }
  }
  const done = list.filter((i) => i.done).length;
  el.empty.hidden = list.length > 0;
  el.empty.textContent = itemsOf(state) || list.length ? 'Nothing to do yet. Add the first item above.' : 'Nothing to do yet.';
  el.count.textContent = list.length ? `${plural(list.length - done, 'item', 'items')} left · ${done} done` : '';
  el.clearDone.disabled = done === 0;
  renderPresence();
  refreshStatus();
}

// ---- who is here (presence) ---------------------------------------------------

// What this window shows the others: its client id and the item it edits.
let myPresence = { editing: null };
function showPresence(p) {
  myPresence = { ...myPresence, ...p };
  if (room) room.presence.set({ name: conn.client, ...myPresence }).catch(() => {});
}

function renderPresence() {
  if (!room) return;
  const others = room.presence.others.filter((p) => p.state && typeof p.state === 'object');
  const items = itemsOf(room.state) || {};
  const textOf = (id) => (items[id] && typeof items[id] === 'object' ? String(items[id].text ?? '') : null);
  el.presence.textContent = '';
  if (!others.length) {
    el.presence.textContent = 'Only you here.';
  } else {
    el.presence.append('Also here: ');
    others.forEach((p, k) => {
      if (k) el.presence.append(', ');
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = String(p.state.name || p.client);
      el.presence.append(who);
      const text = p.state.editing ? textOf(p.state.editing) : null;
      if (text !== null) el.presence.append(` (editing “${text}”)`);
    });
  }
  el.presence.dataset.count = String(others.length);
  // each row names who is editing it
  for (const [id, row] of rows) {
    const names = others.filter((p) => p.state.editing === id).map((p) => String(p.state.name || p.client));
    const text = names.length ? `✎ ${names.join(', ')}` : '';
    if (row.editors.textContent !== text) row.editors.textContent = text;
  }
}

// ---- changes that failed -------------------------------------------------------

// Every rejected change, with what it was and why (a list, not only the
// last notice: offline edits can fail several at once on reconnect).
function describeChange(action) {
  const op = action && action.type === 'patch' && Array.isArray(action.payload) ? action.payload[0] : null;
  const m = op && typeof op.path === 'string' ? /^\/items\/([^/]+)(?:\/(text|done))?$/.exec(op.path) : null;
  if (!m) return 'A change';
  const [, , field] = m;
  if (op.op === 'add' && !field) return `Adding “${op.value && op.value.text}”`;
  if (op.op === 'remove') return 'Deleting an item';
  if (field === 'text') return `Renaming an item to “${op.value}”`;
  if (field === 'done') return op.value ? 'Ticking an item' : 'Unticking an item';
  return 'A change';
}

const REASONS = {
  bad_patch: 'the item is gone (another window deleted it) or changed shape',
  test_failed: 'the item changed in another window first',
  after_reject: 'it built on a change that failed',
  stale: 'the room changed meanwhile',
  too_large: 'it is too large',
  forbidden: 'this window may not change the room',
};

function addFailure(e) {
  const li = document.createElement('li');
  li.dataset.code = e.code;
  li.append(`${describeChange(e.action)} failed: ${REASONS[e.code] || e.message} `);
  const code = document.createElement('span');
  code.className = 'code';
  code.textContent = `(${e.code})`;
  li.append(code);
  el.failuresList.append(li);
  el.failures.hidden = false;
}

// ---- edits ------------------------------------------------------------------

function randomId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// Dispatch a patch; the outcome shows through the room's events (the
// "change" event redraws the status bar and the unsaved marks, a reject
// becomes a notice), so the promise is only for callers that want the ack.
function send(ops, opts) {
  if (!room) return Promise.resolve(null);
  return room.patch(ops, opts).then((ack) => ack, () => null);
}

// A room created by something else than this demo may lack /items: create
// it, as a compare-and-set so it never overwrites items added meanwhile.
let initSent = false;
function ensureItems() {
  if (!room || itemsOf(room.state) || initSent) return [];
  const s = room.state;
  if (s === null || typeof s !== 'object' || Array.isArray(s)) {
    notice('This room does not hold a todo list (its state is not an object).');
    return null;
  }
  initSent = true;
  room.patch([{ op: 'add', path: '/items', value: {} }], { strict: true })
    .catch(() => {}).finally(() => { initSent = false; });
  return [];
}

function addItem(text) {
  text = String(text).trim();
  if (!text || !room || ensureItems() === null) return null;
  const id = randomId();
  return send([{ op: 'add', path: `/items/${id}`, value: { text, done: false, created: Date.now() } }]).then(() => id);
}

function setDone(id, done) {
  return send([{ op: 'replace', path: `/items/${id}/done`, value: !!done }]);
}

function renameItem(id, text) {
  return send([{ op: 'replace', path: `/items/${id}/text`, value: String(text) }]);
}

function removeItem(id, opts) {
  return send([{ op: 'remove', path: `/items/${id}` }], opts);
}

function clearDone() {
  // one independent action per item ({dep: false}: no rejection cascade):
  // when another window removed one of them first, only that one fails (a
  // single patch, or actions chained by dep, would fail as a whole)
  for (const item of sortedItems(room.state)) if (item.done) removeItem(item.id, { dep: false });
}

// ---- wiring -----------------------------------------------------------------

el.roomInput.value = roomName;
el.roomForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = el.roomInput.value.trim();
  if (!ROOM_RE.test(name) || name[0] === ':') { notice('A room name is 1–200 of A–Z a–z 0–9 _ . : -'); return; }
  location.hash = `room=${name}`;
});
el.splitLink.href = `/demo/split.html#room=${encodeURIComponent(roomName)}`;
if (window.top !== window) el.splitLink.target = '_top'; // inside split.html itself
document.title = `${roomName} · Shared todo`;

el.addForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = el.newItem.value;
  if (!text.trim()) return;
  addItem(text);
  el.newItem.value = '';
  el.newItem.focus();
});
el.clearDone.addEventListener('click', clearDone);
el.failuresClear.addEventListener('click', () => {
  el.failuresList.textContent = '';
  el.failures.hidden = true;
});
window.addEventListener('online', refreshStatus);
window.addEventListener('offline', refreshStatus);
// The room's "change" event: pendingCount, seq, checksum or the room's
// status changed (an ack folds our own change into the confirmed state
// without changing the view, so subscribe() is not called): redraw the
// unsaved marks when the confirmed state moved, else just the status bar.
// Nothing here polls.
function refresh() {
  if (room && room.confirmedState !== renderedConfirmed) render(room.state);
  else refreshStatus();
}

// Two live tabs must never be the same client: they would share the action
// counter n in localStorage, and the server would take one tab's action for
// a resend of the other's. movex.js holds a Web Lock on the client id; for a
// ?client= name already open in another tab, this one waits (clientLock
// "wait", status "waiting") until that tab is closed.
async function start() {
  try {
    conn = connect(serverUrl(), { client: clientId, clientLock: 'wait' });
  } catch (e) {
    el.statusText.textContent = `Cannot connect: ${e.message}`;
    throw e;
  }
  window.demo.conn = conn;
  conn.on('status', (s) => {
    // (a reload briefly waits for the old page's lock: no notice for that)
    clearTimeout(waitingTimer);
    waitingTimer = s === 'waiting' ? setTimeout(() => notice(`Client “${conn.client}” is already open in another tab of this browser; this tab waits until that one is closed.`), 1500) : null;
    reconnectingSince = s === 'reconnecting' ? (reconnectingSince || Date.now()) : 0;
    clearTimeout(offlineTimer);
    offlineTimer = s === 'reconnecting' ? setTimeout(refreshStatus, reconnectingSince + OFFLINE_AFTER_MS - Date.now()) : null;
    refreshStatus();
  });
  conn.on('error', (e) => {
    console.warn('movex:', e.code, e.message);
    if (e.code === 'checksum_mismatch' || e.code === 'storage' || e.code === 'unauthorized' || e.code === 'forbidden') {
      notice(`${e.code}: ${e.message}`);
    }
  });
  refreshStatus();
  return conn.join(roomName, { create: { items: {} } }).then((r) => {
    room = r;
    window.demo.room = r;
    r.subscribe(render);
    r.on('change', refresh);
    r.on('reject', addFailure);
    r.on('presence', renderPresence);
    showPresence({});
    el.newItem.disabled = false;
    el.addButton.disabled = false;
    render(r.state);
    ensureItems();
    return r;
  }, (e) => {
    el.statusText.textContent = `Cannot join ${roomName}: ${e.code || ''} ${e.message}`;
    el.empty.textContent = 'This room cannot be opened.';
    throw e;
  });
}

// A handle for the console and for tests.
window.demo = {
  roomName,
  conn: null,
  room: null,
  ready: null,
  items: () => (room ? sortedItems(room.state).map(({ raw, ...it }) => it) : []),
  add: addItem,
  setDone,
  rename: renameItem,
  remove: removeItem,
  status: connectionState,
  failures: () => [...el.failuresList.children].map((li) => ({ code: li.dataset.code, text: li.textContent })),
  presence: () => (room ? room.presence.others : []),
  editing: (id) => showPresence({ editing: id }),
};
window.demo.ready = start();
window.demo.ready.catch(() => {});
