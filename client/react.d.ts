// react.d.ts - types for react.js, the React hooks of movex.js.
import type { Connection, Room, Json, JoinOptions, RoomStatus, PresenceEntry, MovexError } from './movex.js';

export interface UseRoomResult<S extends Json = Json> {
  /** The joined room, or null while joining (or after an error). */
  room: Room<S> | null;
  /** Why the join failed (code "unauthorized", "forbidden", "no_such_room", ...), or null. */
  error: MovexError | null;
  /** The room's current state (undefined until joined). */
  state: S | undefined;
  status: RoomStatus;
  seq: number;
  checksum: string | null;
  pendingCount: number;
}

/** Join `name` on `conn` (again when either changes; options are read then)
 * and re-render on every change of state, status, seq or pendingCount. The
 * room is never left by the hook. */
export function useRoom<S extends Json = Json>(conn: Connection | null | undefined, name: string | null | undefined,
  options?: JoinOptions<S>): UseRoomResult<S>;

/** [the other connections' presence, a setter for this connection's]. */
export function usePresence<P extends Json = Json>(room: Room | null | undefined):
  [PresenceEntry<P>[], (v: P | null) => Promise<void>];
