// react.js - React hooks for movex.js (client/react.js; "movexd-client/react").
//
//   import { connect } from 'movexd-client';
//   import { useRoom, usePresence } from 'movexd-client/react';
//   const conn = connect('wss://host/ws');            // once, outside components
//   function Todo() {
//     const { room, state, status, pendingCount, error } = useRoom(conn, 'todo:a', { create: { items: {} } });
//     const [others, setPresence] = usePresence(room);
//     ...
//   }
//
// useRoom joins the room when conn or name change (options are read at
// that moment) and re-renders on every change of the room's state, status,
// seq or pendingCount. It never leaves the room: conn.join() hands every
// caller the same Room, and another component may still use it; call
// room.leave() yourself when the app is done with it. usePresence returns
// the other connections' presence ([{client, conn, state}]) and a setter
// (room.presence.set). Only useState, useEffect and useCallback are used,
// so any React >= 16.8 (and Preact's compat layer) works.
import { useCallback, useEffect, useState } from 'react';

const NONE = { state: undefined, status: 'idle', seq: -1, pendingCount: 0, checksum: null };

function viewOf(room) {
  return { state: room.state, status: room.status, seq: room.seq, pendingCount: room.pendingCount, checksum: room.checksum };
}

/** Join `name` on `conn`; returns { room, state, status, seq, checksum, pendingCount, error }. */
export function useRoom(conn, name, options) {
  const [room, setRoom] = useState(() => (conn && name ? conn.room(name) || null : null));
  const [error, setError] = useState(null);
  const [view, setView] = useState(() => (room ? viewOf(room) : NONE));

  useEffect(() => {
    if (!conn || !name) return undefined;
    let live = true;
    setError(null);
    conn.join(name, options).then(
      (r) => { if (live) setRoom(r); },
      (e) => { if (live) { setRoom(null); setError(e); } },
    );
    return () => { live = false; };
    // options are read when joining (like create: an initial state)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [conn, name]);

  useEffect(() => {
    if (!room) {
      setView(NONE);
      return undefined;
    }
    const update = () => setView(viewOf(room));
    update();
    // subscribe(): every new state at once; "change": seq, status,
    // pendingCount (an ack changes those, not the state)
    const offState = room.subscribe(update);
    const offChange = room.on('change', update);
    return () => { offState(); offChange(); };
  }, [room]);

  return { room, error, ...view };
}

/** The other connections' presence in `room` and a setter for ours:
 * [others, set]; others is [] while room is null. */
export function usePresence(room) {
  const [others, setOthers] = useState(() => (room ? room.presence.others : []));
  useEffect(() => {
    if (!room) {
      setOthers([]);
      return undefined;
    }
    setOthers(room.presence.others);
    return room.on('presence', setOthers);
  }, [room]);
  const set = useCallback((v) => (room ? room.presence.set(v) : Promise.resolve()), [room]);
  return [others, set];
}
