// movex.d.ts - types for movex.js, the movex browser client library
// (protocol v1). See the top of movex.js for the design and invariants.

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A JSON Patch operation (RFC 6902) or movex's `inc`. */
export type PatchOp =
  | { op: 'add'; path: string; value: Json }
  | { op: 'remove'; path: string }
  | { op: 'replace'; path: string; value: Json }
  | { op: 'move'; from: string; path: string }
  | { op: 'copy'; from: string; path: string }
  | { op: 'test'; path: string; value: Json }
  /** Adds value to the number at path, or creates path with value when it is missing from an existing object. */
  | { op: 'inc'; path: string; value: number };

/** An action: the built-in `json` reducer accepts `{type: "patch", payload: PatchOp[]}`. */
export interface Action<T extends string = string, P = Json> {
  type: T;
  payload?: P;
}

export type PatchAction = Action<'patch', PatchOp[]>;

/** Protocol error codes (docs/PROTOCOL.md), plus the library's own. */
export type ErrorCode =
  | 'bad_request' | 'bad_json' | 'unknown_type' | 'hello_first' | 'unauthorized' | 'forbidden'
  | 'no_such_room' | 'room_exists' | 'bad_room' | 'not_subscribed' | 'test_failed' | 'bad_patch'
  | 'stale' | 'after_reject' | 'too_old' | 'too_large' | 'rate_limited' | 'bad_action' | 'too_deep'
  | 'limit' | 'unavailable' | 'no_memory' | 'bad_dep' | 'internal'
  // library codes
  | 'closed' | 'left' | 'storage' | 'checksum_mismatch' | 'client_mismatch' | 'client_in_use' | 'connect_failed' | 'bad_reply'
  | 'token'
  | (string & {});

/** An error from the server or the library. */
export class MovexError extends Error {
  constructor(code: ErrorCode, message?: string, extra?: object);
  readonly name: 'MovexError';
  readonly code: ErrorCode;
  /** The action's n (rejects). */
  readonly n?: number;
  /** The rejected action (rejects). */
  readonly action?: Action;
  /** The room concerned, when there is one. */
  readonly room?: string;
  /** The WebSocket close code (code "closed" from the server). */
  readonly closeCode?: number;
}

/** A patch that cannot apply. Nothing was applied. */
export class PatchError extends Error {
  constructor(code: 'bad_patch' | 'test_failed', message: string, opIndex?: number);
  readonly name: 'PatchError';
  readonly code: 'bad_patch' | 'test_failed';
  /** Index of the failing operation. */
  readonly opIndex: number;
}

/** A synchronous key-value store, such as localStorage. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Minimal WebSocket constructor (the browser's, or the `ws` package in Node). */
export interface WebSocketLike {
  readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface BackoffOptions {
  /** First ceiling in ms (default 250). Delay for attempt k: uniform in [0, min(cap, base * 2^k)). */
  base?: number;
  /** Largest ceiling in ms (default 10000). */
  cap?: number;
}

export interface ConnectOptions {
  /** Client id (1..128 of A-Z a-z 0-9 _ . : @ -). Default: generated once
   * and persisted in storage (one per live browser tab with Web Locks). With
   * auth, pass the token's subject. A given id is locked too (see
   * clientLock). */
  client?: string;
  /** What to do when the given `client` id is in use by another tab or
   * connection of this origin (it holds the Web Lock "movex-client:<id>";
   * two live users of one id would share the action counter n and corrupt
   * exactly-once):
   * - "fail" (default): the connection does not start: an "error" event
   *   (code "client_in_use"), status "closed", and join() rejects with it;
   * - "wait": status "waiting" (nothing is sent) until the lock is free,
   *   then it connects; close() stops the wait;
   * - false: no lock (the app guarantees a single user of the id).
   * Ignored without Web Locks (navigator.locks), e.g. in Node. */
  clientLock?: 'fail' | 'wait' | false;
  /** Auth token sent in hello. A static token the server refuses (an
   * `unauthorized` error, or a close with 4001 when it expired) stops the
   * connection for good: an "error" event, status "closed", and join()
   * rejects with code "unauthorized". A function (may be async) is called
   * for every (re)connect, again before the token expires (at 90% of the
   * lifetime its `exp` claim leaves; the connection is renewed with the new
   * token), and again after a refusal or a 4001 (reconnecting after the
   * backoff delay); refused twice in a row, it stops the same way. */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /** The browser's connectivity: `offline` drops the socket at once (status
   * "offline"), `online` reconnects at once. Default: window's events and
   * navigator.onLine when they exist; null turns it off; tests pass a stand-in. */
  network?: { target: EventTarget; onLine(): boolean } | null;
  /** WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: WebSocketConstructor;
  /** Where unacked actions, n counters and the client id live (default:
   * localStorage when available, else memory). */
  storage?: StorageLike;
  /** Prefix of every storage key (default "movex:"). */
  storagePrefix?: string;
  /** Reconnect backoff (exponential, full jitter). */
  backoff?: BackoffOptions;
  /** Liveness check: a ping every `interval` ms; no message for `timeout` ms
   * after it drops the socket and reconnects. false disables. Default
   * { interval: 15000, timeout: 10000 }. */
  ping?: { interval?: number; timeout?: number } | false;
  /** A connection attempt without a welcome in this many ms is abandoned (default 10000). */
  connectTimeout?: number;
  /** Subprotocols offered (default ["movex.v1"]). */
  protocols?: string[];
  /** Deep-freeze every state handed out (handy in development). Default false. */
  freeze?: boolean;
  /** Random source for the backoff jitter (tests). Default Math.random. */
  random?: () => number;
  /** Predictions for non-json rooms, per action type (see JoinOptions.predict). */
  predict?: Predict;
}

export interface JoinOptions<S extends Json = Json> {
  /** Create the room with this initial state first (an existing room is fine: then just subscribe). */
  create?: S;
  /** Predicts non-patch actions locally: returns the patch the server's
   * reducer would produce, or null (then the action shows once confirmed). */
  reducer?: (state: S, action: Action) => PatchOp[] | null | undefined;
  /** Optimistic predictions per action type for a room whose reducer is
   * not json (a Lua reducer, docs/REDUCERS.md): the patch the server will
   * probably apply. Without one such an action stays pending with no
   * visible change until its ack; the server's effects always replace the
   * prediction. Overrides ConnectOptions.predict for this room. */
  predict?: Predict<S>;
  /** Overrides the connection's freeze option for this room. */
  freeze?: boolean;
}

/** action type -> (state, action) => the effects the server's reducer will probably emit. */
export type Predict<S extends Json = Json> = {
  [actionType: string]: (state: S, action: Action) => PatchOp[] | null | undefined;
};

export interface DispatchOptions {
  /** Compare-and-set: rejected with "stale" unless nothing else was applied
   * to the room since the state this action was built on. */
  strict?: boolean;
  /** true (the default): `dep` names the pending actions of this client in
   * the room whose JSON Pointers (what the patch reads and writes; `from`
   * too for move and copy) overlap this one's - one a prefix of the other -
   * so the server rejects it (after_reject) when one of those is rejected,
   * and unrelated pending actions are decided on their own. An action that
   * is not a JSON Patch overlaps everything. false: an independent action.
   * An n or a list of up to 16 n's (earlier actions of this room): exactly
   * those. */
  dep?: boolean | number | number[];
}

/** What an action's promise resolves with: it is applied and durable. */
export interface Ack {
  n: number;
  /** The seq it was applied as. */
  seq: number;
  /** The room's checksum after it. */
  checksum: string;
  /** true when the server answered a resend from its exactly-once memory. */
  duplicate: boolean;
}

/** "waiting": for the given client id's lock (clientLock "wait"). */
/** "offline": the browser says it has no network (reconnects when it is back). */
export type ConnectionStatus = 'waiting' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed';
export type RoomStatus = 'idle' | 'creating' | 'subscribing' | 'live' | 'syncing' | 'left';

export interface ResyncEvent {
  /** "reconnect", "checksum_mismatch", "gap", "apply_failed" or "bad_catch_up". */
  reason: string;
  kind: 'actions' | 'snapshot';
  /** The confirmed seq afterwards. */
  seq: number;
  from?: number;
  to?: number;
}

export interface Welcome {
  type: 'welcome';
  client: string;
  /** The server's id for this connection (presence names connections by it). */
  conn?: number;
  server: string;
  limits?: Limits;
}

export interface Limits {
  max_message_bytes?: number;
  max_depth?: number;
  max_queue_bytes?: number;
  max_rooms?: number;
  dedup_window?: number;
  [key: string]: number | undefined;
}

export interface ConnectionEvents {
  status: (status: ConnectionStatus) => void;
  error: (error: MovexError) => void;
  welcome: (welcome: Welcome) => void;
}

/** What a Room's "change" event carries: the room's readable properties at
 * the time of the event. */
export interface RoomChange<S extends Json = Json> {
  state: S;
  confirmedState: S;
  seq: number;
  checksum: string | null;
  pendingCount: number;
  status: RoomStatus;
}

export interface RoomEvents<S extends Json = Json> {
  /** Anything the app can read changed: state, confirmedState, seq,
   * checksum, pendingCount or status (for example an ack, which changes
   * seq and pendingCount but not state, or a reconnect, which changes
   * status). Emitted in a microtask, so at most once per incoming message
   * or burst of dispatches, and only when something differs from the
   * previous event. The connection's own status has its own event
   * (Connection "status"). */
  change: (change: RoomChange<S>) => void;
  /** An action was rejected (also for dependents dropped with after_reject). */
  reject: (error: MovexError) => void;
  /** The room caught up through `sync`/resubscribe (actions or a snapshot). */
  resync: (event: ResyncEvent) => void;
  /** The other connections' presence changed (the whole list). */
  presence: (others: PresenceEntry[]) => void;
  error: (error: MovexError) => void;
}

/** Another connection's presence in a room. */
export interface PresenceEntry<P extends Json = Json> {
  client: string;
  /** The server's id for that connection (two tabs of one client differ). */
  conn: number;
  state: P;
}

/** Ephemeral per-connection state in a room: never stored, not part of the
 * room's state, seq or checksum; gone when the connection is. */
export interface Presence<P extends Json = Json> {
  /** Show v to the room's other connections (any JSON value up to the room
   * type's max_presence_bytes; null clears). Resolves when the server took
   * it or a later value; rejects with a MovexError (too_large, forbidden:
   * setting needs the write right). Shown again after a reconnect. */
  set(v: P | null): Promise<void>;
  /** What this connection shows (null: nothing). */
  readonly state: P | null;
  /** The other connections' presence (updated before each "presence" event). */
  readonly others: PresenceEntry<P>[];
}

declare class Emitter<E> {
  /** Listen to an event; returns a function that removes the listener. */
  on<K extends keyof E>(event: K, fn: E[K]): () => void;
  off<K extends keyof E>(event: K, fn: E[K]): void;
}

export class Room<S extends Json = Json> extends Emitter<RoomEvents<S>> {
  readonly conn: Connection;
  readonly name: string;
  /** The current state: confirmed + pending actions applied on top. Never
   * mutated in place: each change is a new object along the changed paths,
   * sharing everything else. */
  readonly state: S;
  /** The last state confirmed by the server. */
  readonly confirmedState: S;
  /** The confirmed seq (-1 before the first snapshot). */
  readonly seq: number;
  /** The checksum of the confirmed state. */
  readonly checksum: string | null;
  /** Number of actions not yet acked or rejected. */
  readonly pendingCount: number;
  readonly status: RoomStatus;
  /** This connection's presence and the others' (see Presence). */
  readonly presence: Presence;
  /** Call fn with the current state at once, then with the new state after
   * every change of state (synchronously); returns an unsubscribe function. For pendingCount, seq and status
   * changes, listen to the "change" event. */
  subscribe(fn: (state: S) => void): () => void;
  /** Dispatch an action; resolves at the durable ack, rejects (MovexError) on reject. */
  dispatch(action: Action, options?: DispatchOptions): Promise<Ack>;
  /** Dispatch {type: "patch", payload: ops}. */
  patch(ops: PatchOp[], options?: DispatchOptions): Promise<Ack>;
  /** Resolves when every action dispatched to this room so far is settled. */
  flush(): Promise<void>;
  /** Unsubscribe. Unacked actions stay in storage and are resent at the next join ({flush: true} waits for them first). */
  leave(options?: { flush?: boolean }): Promise<void>;
}

export class Connection extends Emitter<ConnectionEvents> {
  readonly url: string;
  /** This client's id (null until resolved, before the first hello). */
  readonly client: string | null;
  readonly status: ConnectionStatus;
  /** The server's limits (from welcome), or null before it. */
  readonly limits: Limits | null;
  /** The server's id for the current connection (welcome "conn"), or null. */
  readonly connId: number | null;
  /** Join a room (create it first with options.create); resolves once its
   * state is known. Rejects with a MovexError whose code says why:
   * "unauthorized" (the token was refused; see ConnectOptions.token),
   * "forbidden" (no read right, or no create right for options.create),
   * "no_such_room" (it does not exist and is not created on subscribe),
   * "client_in_use", "closed", "bad_room". */
  join<S extends Json = Json>(room: string, options?: JoinOptions<S>): Promise<Room<S>>;
  /** The joined room with this id, if any. */
  room<S extends Json = Json>(room: string): Room<S> | undefined;
  /** Resolves when every dispatched action is acked or rejected; rejects if the connection is closed first. */
  flush(): Promise<void>;
  /** Close for good; {flush: true} first waits for every ack (at most timeout ms when given). */
  close(options?: { flush?: boolean; timeout?: number }): Promise<void>;
}

/** Connect to a movexd WebSocket endpoint (ws[s]://host/ws). */
export function connect(url: string, options?: ConnectOptions): Connection;

/** Apply a JSON Patch immutably (structural sharing); throws PatchError and then nothing was applied. */
export function applyPatch<T extends Json = Json>(doc: T, ops: PatchOp[], options?: { freeze?: boolean }): Json;
/** Check a patch's shape (op names, members, pointer syntax); throws PatchError("bad_patch"). */
export function validatePatch(ops: unknown): asserts ops is PatchOp[];

/** The movex checksum of a JSON value: 32 lowercase hex characters. */
export function checksum(value: Json): string;
/** The checksum of a value never mutated afterwards; digests of its objects and arrays are cached by identity. */
export function cachedChecksum(value: Json): string;
/** D(value): the 16-byte BLAKE2b-128 digest of the tagged encoding. */
export function digest(value: Json): Uint8Array;
/** BLAKE2b (RFC 7693) with an outlen of 1..64 bytes and an optional key of up to 64 bytes. */
export function blake2b(bytes: Uint8Array | ArrayBufferView | ArrayBuffer, outlen?: number, key?: Uint8Array): Uint8Array;
/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string;

/** Reconnect delay for attempt k (0-based): uniform in [0, min(cap, base * 2^k)). */
export function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;
/** A fresh random client id ("c-" + 32 hex digits). */
export function randomClientId(): string;
/** A StorageLike kept in memory. */
export function memoryStorage(): StorageLike;
/** The JSON Pointers an action reads or writes (dependencies): `path`, and
 * `from` of move/copy; an array index stands for its array; [""] (all) for
 * an action that is not a JSON Patch. */
export function pathsOf(action: Action): string[];
/** true when one JSON Pointer is a prefix of the other, token by token. */
export function pathsOverlap(a: string, b: string): boolean;
