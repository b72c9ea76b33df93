#!lua name=movexd
--[[ cluster_fn.lua - the Redis Function library of cluster mode (issue #14,
docs/CLUSTER.md): the one place where a room's order is decided.

A node decides an action on its replica of the room and submits the outcome
here with the head (seq, sub, sum) it decided on; this library appends it
atomically, or refuses because the head moved. It never runs app logic: an
applied action's effects arrive as an opaque JSON text that is stored and
published verbatim (never decoded and re-encoded, so numbers keep every
digit and the hash chain covers exactly the bytes replicas receive).

Invariants, per room (its keys share the hash tag {R}):
- head = the last stream entry: seq (applied actions, gap-free from 1),
  sub (recorded rejects since that apply), sum (the state checksum after
  the head), hash (the chain), inc (the room's incarnation: a random id
  given at create; a room deleted and created again gets another one, so
  a batch decided on the old room - a node's journal replaying it after a
  rollback - is refused even at the same seq and checksum). Stream IDs
  are seq-sub, strictly increasing.
- hash = sha1(previous hash .. " " .. ID .. " " .. entry); "" before the
  first entry.
- For each client: hi = highest decided n; dd["client:n"] = its outcome
  ("ack SEQ" or "reject CODE") for the last `window` n. An n at or below
  hi is never decided again: it is answered from dd (duplicate) or too_old.
- Rules the library can check itself (duplicate, dep, strict) decide here.
  When its verdict differs from the node's, the verdict stands for that
  action and every later action of the batch is answered "moved": the node
  had chained them on a state that will not exist.

Numbers cross this boundary as decimal strings: Lua 5.1 numbers are doubles
and cjson prints 14 digits, n goes up to 2^53-2.
]]

local function int(s)
  local v = tonumber(s)
  if v == nil or v ~= v or v < 0 or v > 9007199254740992 or v % 1 ~= 0 then
    return nil
  end
  return v
end

local function dec(v) return string.format('%d', v) end

local function head_of(key)
  local h = redis.call('HMGET', key, 'seq', 'sub', 'sum', 'hash', 'inc')
  if not h[1] then return nil end
  return { seq = int(h[1]), sub = int(h[2]), sum = h[3], hash = h[4], inc = h[5] or '' }
end

-- an incarnation id: 1..32 lowercase hex digits ("" only for rooms
-- created before incarnations existed)
local function good_inc(s) return #s >= 1 and #s <= 32 and string.match(s, '^[0-9a-f]+$') ~= nil end

local function head_reply(h, out)
  local r = { dec(h.seq), dec(h.sub), h.sum, h.hash }
  for i = 1, #out do r[#r + 1] = out[i] end
  return r
end

-- movexd_create: KEYS head; ARGV sum (the checksum of the initial state),
-- init (the initial state as JSON, stored verbatim; "{}" when absent: a
-- node loading the room starts from it), inc (the new room's incarnation,
-- random, chosen by the node; absent: none, as before incarnations).
-- Creates the room at seq 0 unless it exists. Reply: "created" or
-- "exists", then the head (seq, sub, sum, hash).
local function create(keys, args)
  local sum = args[1]
  if not sum or sum == '' then return redis.error_reply('ERR movexd: missing sum') end
  local h = head_of(keys[1])
  if h then
    local r = head_reply(h, {})
    table.insert(r, 1, 'exists')
    return r
  end
  local init, inc = args[2], args[3]
  if inc and not good_inc(inc) then return redis.error_reply('ERR movexd: bad incarnation') end
  if not init or init == '' then init = '{}' end
  redis.call('HSET', keys[1], 'seq', '0', 'sub', '0', 'sum', sum, 'hash', '', 'init', init)
  if inc then redis.call('HSET', keys[1], 'inc', inc) end
  return { 'created', '0', '0', sum, '' }
end

-- movexd_append: KEYS head, log, hi, dd.
-- ARGV channel, window, expected seq, expected sub, expected sum, now_ms,
-- count, then per action 8 fields: client, n, deps ("3,7" or ""), strict
-- ("1"/"0"), base, kind ("a" applied / "r" rejected), sum-after (a) or
-- reject code (r), effects JSON (a; "" for r); then, optional, the
-- incarnation the batch was decided on (nodes always send it: another
-- incarnation than the head's answers every action "moved").
-- Reply: the head after the batch (seq, sub, sum, hash), then one outcome
-- per action: "ack SEQ", "reject CODE", "dup ack SEQ", "dup reject CODE",
-- "too_old", "bad_dep" or "moved"; then, when the incarnation was given,
-- the head's incarnation.
--
-- Taking turns: with a last, optional argument TURN (the calling node's
-- id, after the incarnation), a batch refused because the head moved gives
-- its node the room's turn for TURN_MS (fields turn and turn_ms of the
-- head; a fresh turn of another node is not taken over). While one node
-- holds a fresh turn, another node's batch on the current head is answered
-- "moved" for every action, nothing written and the head unchanged (a
-- yield): the node that lost the race appends next, instead of losing
-- again to the winner's next batch, which is always sent first (the
-- winner's answer left first). The holder's next append ends its turn -
-- or hands it on: a node refused because the head moved while another
-- held a fresh turn is put in line (field next, one node), and the
-- holder's append gives it the turn at once (turn_ms = now), so with three
-- or more nodes the one refused meanwhile goes next instead of racing the
-- holder's and the others' next batches again. A stale turn's line is
-- dropped with it.
local FIELDS = 8
local TURN_MS = 100
-- Restoring after a rollback: a batch decided on a head Redis no longer
-- has (a failover lost the tail) marks that head (restore_seq/sub, the
-- highest such, restore_ms). Until the log is back there - the nodes'
-- journal replays, which name no node, append regardless - or for
-- RESTORE_MS at most, every other batch naming a node yields (all
-- "moved", the head unchanged): a node whose own part of the lost tail
-- is back must not decide something new on a seq another node's replay
-- is about to restore (it may never have seen that entry).
local RESTORE_MS = 3000
local function time_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function append(keys, args)
  local head_k, log_k, hi_k, dd_k = keys[1], keys[2], keys[3], keys[4]
  local channel, window = args[1], int(args[2])
  local eseq, esub, esum = int(args[3]), int(args[4]), args[5]
  local now, count = int(args[6]), int(args[7])
  if not channel or not window or window < 1 or not eseq or not esub or not esum
     or not now or not count or #args < 7 + count * FIELDS or #args > 9 + count * FIELDS
     or args[9 + count * FIELDS] == '' then
    return redis.error_reply('ERR movexd: bad arguments')
  end
  local einc = args[8 + count * FIELDS] -- nil: not checked (callers before incarnations)
  local turn = args[9 + count * FIELDS] -- nil: no turns (callers before them)
  -- every argument is checked before the first write: a function that
  -- fails half-way keeps its writes (Redis has no rollback)
  for i = 1, count do
    local b = 7 + (i - 1) * FIELDS
    local n, kind, what, body = int(args[b + 2]), args[b + 6], args[b + 7], args[b + 8]
    if args[b + 1] == '' or not n or n < 1 or not int(args[b + 5])
       or (args[b + 4] ~= '0' and args[b + 4] ~= '1') or (kind ~= 'a' and kind ~= 'r')
       or what == '' or (kind == 'a' and body == '') then
      return redis.error_reply('ERR movexd: bad action ' .. i)
    end
    for d in string.gmatch(args[b + 3], '[^,]+') do
      local dn = int(d)
      if not dn or dn < 1 or dn >= n then return redis.error_reply('ERR movexd: bad dep ' .. i) end
    end
  end
  local h = head_of(head_k)
  if not h then return redis.error_reply('ERR movexd: no_room') end
  local out = {}
  local function reply()
    local r = head_reply(h, out)
    if einc then r[#r + 1] = h.inc end
    return r
  end
  local holder, fresh, tnow = nil, false, 0
  local mseq, msub, mfresh = nil, nil, false -- the restore mark (below)
  if turn then
    local t = redis.call('HMGET', head_k, 'turn', 'turn_ms', 'restore_seq', 'restore_sub', 'restore_ms')
    tnow = time_ms()
    holder = t[1]
    fresh = holder ~= false and holder ~= nil and tnow - (int(t[2] or '') or 0) < TURN_MS
    mseq, msub = int(t[3] or ''), int(t[4] or '')
    mfresh = mseq ~= nil and msub ~= nil and tnow - (int(t[5] or '') or 0) < RESTORE_MS
  end
  if h.seq ~= eseq or h.sub ~= esub or h.sum ~= esum or (einc and einc ~= h.inc) then
    if turn and (not einc or einc == h.inc) and (h.seq < eseq or (h.seq == eseq and h.sub < esub)) then
      -- the caller had a head Redis no longer has: a rollback. Mark it
      -- (the highest such head) so that no new decision takes the seqs
      -- the nodes' journals are about to restore
      if not mfresh or eseq > mseq or (eseq == mseq and esub > msub) then
        mseq, msub = eseq, esub
      end
      redis.call('HSET', head_k, 'restore_seq', dec(mseq), 'restore_sub', dec(msub), 'restore_ms', dec(tnow))
    end
    if turn and (not einc or einc == h.inc) then
      if not fresh or holder == turn then
        redis.call('HSET', head_k, 'turn', turn, 'turn_ms', dec(tnow))
        if not fresh then redis.call('HDEL', head_k, 'next') end
      elseif not redis.call('HGET', head_k, 'next') then
        redis.call('HSET', head_k, 'next', turn) -- in line after the holder
      end
    end
    for i = 1, count do out[i] = 'moved' end
    return reply()
  end
  if turn and mseq then
    if mfresh and (h.seq < mseq or (h.seq == mseq and h.sub < msub)) then
      for i = 1, count do out[i] = 'moved' end -- a yield to the journals' replays
      return reply()
    end
    redis.call('HDEL', head_k, 'restore_seq', 'restore_sub', 'restore_ms')
  end
  if turn and fresh and holder ~= turn then
    for i = 1, count do out[i] = 'moved' end -- a yield: the head as it was
    return reply()
  end
  if turn and holder then
    -- the holder's append hands the turn to the node in line (refused
    -- meanwhile): it goes next, instead of racing the others again
    local nxt = fresh and redis.call('HGET', head_k, 'next')
    if nxt and nxt ~= turn then
      redis.call('HSET', head_k, 'turn', nxt, 'turn_ms', dec(tnow))
    else
      redis.call('HDEL', head_k, 'turn', 'turn_ms')
    end
    redis.call('HDEL', head_k, 'next')
  end
  local stopped = false
  for i = 1, count do
    local b = 7 + (i - 1) * FIELDS
    local client, n, deps, strict = args[b + 1], int(args[b + 2]), args[b + 3], args[b + 4]
    local base, kind, what, body = int(args[b + 5]), args[b + 6], args[b + 7], args[b + 8]
    if stopped then
      out[i] = 'moved'
    else
      local hi = int(redis.call('HGET', hi_k, client) or '0')
      local verdict = nil -- the library's own decision, when it has one
      local record = true
      if n <= hi then
        local o = redis.call('HGET', dd_k, client .. ':' .. dec(n))
        verdict = o and ('dup ' .. o) or 'too_old'
        record = false
      else
        for d in string.gmatch(deps, '[^,]+') do
          local dn = int(d)
          local o = redis.call('HGET', dd_k, client .. ':' .. dec(dn))
          if o and string.sub(o, 1, 7) == 'reject ' then
            verdict = 'reject after_reject'
            break
          elseif not o then
            if dn <= hi then verdict = 'reject too_old' else verdict = 'bad_dep'; record = false end
            break
          end
        end
        if not verdict and strict == '1' and base ~= h.seq then verdict = 'reject stale' end
      end
      local mine = kind == 'a' and ('ack ' .. dec(h.seq + 1)) or ('reject ' .. what)
      if verdict and verdict ~= mine then
        stopped = true
      else
        verdict = mine
      end
      if record then
        local rk, code = 'a', nil
        if string.sub(verdict, 1, 7) == 'reject ' then rk, code = 'r', string.sub(verdict, 8) end
        local entry
        if rk == 'a' then
          h.seq, h.sub, h.sum = h.seq + 1, 0, what
          verdict = 'ack ' .. dec(h.seq)
          entry = '{"c":' .. cjson.encode(client) .. ',"n":' .. dec(n) .. ',"k":"a","sum":'
                  .. cjson.encode(what) .. ',"t":' .. dec(now) .. ',"e":' .. body .. '}'
        else
          h.sub = h.sub + 1
          entry = '{"c":' .. cjson.encode(client) .. ',"n":' .. dec(n) .. ',"k":"r","code":'
                  .. cjson.encode(code) .. ',"t":' .. dec(now) .. '}'
        end
        local id = dec(h.seq) .. '-' .. dec(h.sub)
        h.hash = redis.sha1hex(h.hash .. ' ' .. id .. ' ' .. entry)
        -- the chain hash after the entry rides along (field h), so a
        -- snapshot at any ID still in the stream can be checked against it
        redis.call('XADD', log_k, id, 'e', entry, 'h', h.hash)
        redis.call('HSET', head_k, 'seq', dec(h.seq), 'sub', dec(h.sub), 'sum', h.sum, 'hash', h.hash)
        redis.call('HSET', hi_k, client, dec(n))
        redis.call('HSET', dd_k, client .. ':' .. dec(n), verdict)
        -- the memory keeps n - window + 1 .. n; before this record it held
        -- at most hi - window + 1 .. hi, so that range below the new bound
        -- goes: one HDEL when n follows hi, at most `window` after a jump
        -- (deleting only n - window would leave older ones behind forever)
        local lo = hi - window + 1
        if lo < 1 then lo = 1 end
        local top = n - window
        if top > hi then top = hi end
        for k = lo, top do redis.call('HDEL', dd_k, client .. ':' .. dec(k)) end
        redis.call('PUBLISH', channel, id .. ' ' .. h.hash .. ' ' .. entry)
      end
      out[i] = verdict
    end
  end
  return reply()
end

-- movexd_snapshot: KEYS head, log, snap.
-- ARGV seq, sub (the ID the snapshot is at), hash (the chain hash after
-- that entry), sum (the state checksum there), keep (applied entries to
-- keep in the stream behind the snapshot: the room type's history), data
-- (the node's encoding of the room at that ID, stored verbatim: state,
-- history and exactly-once memory), now_ms.
-- Stores it only if it is newer than the stored one and the stream's
-- entry at seq-sub carries that hash (and, for an applied entry, that
-- sum): a node whose replica forked, or that is behind the last snapshot,
-- cannot store anything, whichever node calls first. Then XTRIM MINID ~
-- drops entries older than seq - keep + 1 (~: whole stream nodes only, so
-- at least `keep` stay; a node behind the snapshot by less catches up with
-- XRANGE, one further behind loads the snapshot).
-- Reply: "stored" | "stale" (not newer) | "mismatch" (hash or sum differ)
-- | "gone" (no entry at that ID), then the stored snapshot's seq and sub
-- (after the call) and the number of entries trimmed.
local function snapshot(keys, args)
  local head_k, log_k, snap_k = keys[1], keys[2], keys[3]
  local seq, sub, hash, sum = int(args[1]), int(args[2]), args[3], args[4]
  local keep, data, now = int(args[5]), args[6], int(args[7])
  if not seq or not sub or seq < 1 or not hash or not string.match(hash, '^%x+$') or #hash ~= 40
     or not sum or sum == '' or not keep or not data or data == '' or not now then
    return redis.error_reply('ERR movexd: bad arguments')
  end
  local h = head_of(head_k)
  if not h then return redis.error_reply('ERR movexd: no_room') end
  local s = redis.call('HMGET', snap_k, 'seq', 'sub')
  local sseq, ssub = int(s[1] or '0') or 0, int(s[2] or '0') or 0
  local function reply(what, trimmed)
    return { what, dec(sseq), dec(ssub), trimmed or 0 }
  end
  if seq < sseq or (seq == sseq and sub <= ssub) then return reply('stale') end
  local id = dec(seq) .. '-' .. dec(sub)
  local e = redis.call('XRANGE', log_k, id, id)
  if #e == 0 then return reply('gone') end
  local f, eh, etext = e[1][2], nil, nil
  for i = 1, #f - 1, 2 do
    if f[i] == 'h' then eh = f[i + 1] elseif f[i] == 'e' then etext = f[i + 1] end
  end
  if eh ~= hash then return reply('mismatch') end
  if sub == 0 and not (etext and string.find(etext, ',"sum":' .. cjson.encode(sum) .. ',', 1, true)) then
    return reply('mismatch')
  end
  redis.call('HSET', snap_k, 'seq', dec(seq), 'sub', dec(sub), 'hash', hash, 'sum', sum, 'data', data,
             't', dec(now))
  sseq, ssub = seq, sub
  local trimmed = 0
  if seq > keep then
    trimmed = redis.call('XTRIM', log_k, 'MINID', '~', dec(seq - keep + 1) .. '-0')
  end
  return reply('stored', trimmed)
end

-- movexd_delete: KEYS head, log, hi, dd, snap; ARGV channel.
-- Deletes the room - every key of it, at once - and publishes
-- "delete INC" on its channel (INC: the incarnation deleted, "" for a room
-- from before incarnations), so every node holding it drops it and tells
-- its subscribers; a node holding a newer incarnation ignores it. Reply:
-- "deleted" + that incarnation, or "none" (no such room: nothing written).
local function delete(keys, args)
  local channel = args[1]
  if #keys ~= 5 or not channel or channel == '' then return redis.error_reply('ERR movexd: bad arguments') end
  local h = head_of(keys[1])
  if not h then return { 'none' } end
  redis.call('DEL', keys[1], keys[2], keys[3], keys[4], keys[5])
  redis.call('PUBLISH', channel, 'delete ' .. h.inc)
  return { 'deleted', h.inc }
end

redis.register_function('movexd_create', create)
redis.register_function('movexd_delete', delete)
redis.register_function('movexd_append', append)
redis.register_function('movexd_snapshot', snapshot)
