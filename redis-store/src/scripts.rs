//! The Lua scripts: each store write is one of these, so it is atomic.
//!
//! Every key a script touches carries the namespace's hash tag (`{ns}`), so
//! on Redis Cluster they all live in one slot and a script never crosses
//! slots. Scripts name the record's key (or the one structure they work on)
//! in KEYS; the derived keys they reach from there share its slot.
//!
//! A service's *index entry* (field `<id>` of the `idx` hash) is what its last
//! write derived: the sets it is in, its queue member, its timers, its
//! agent, its storage deadline, its seat, its room code and the agent it
//! keeps in a live room. The next write, or the purge, undoes exactly that,
//! so no index can drift from the records, even after Redis expired a
//! record by itself.

use engine::record::ServiceState;
use std::sync::Arc;

use redis::aio::ConnectionLike;
use redis::{
    Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, Script, ServerErrorKind, ToRedisArgs,
};

use crate::keys::state_name;

/// Functions every write script shares. `P` is the key prefix (`{ns}:`).
const PRELUDE: &str = r#"
local P = ARGV[1]

-- A whole number as text, for an argument of redis.call or a member.
-- Redis 7.0 writes a Lua number argument with snprintf's '%.17g', and Lua
-- concatenates one with '%.14g': both go through glibc's multi-precision
-- float printing, several thousand instructions a number (a fifth of a
-- create's Lua). '%d' takes the integer path.
local function int_text(n) return string.format('%d', n) end

-- The timer kinds' codes as text, for members: a lookup, not a format.
-- (A literal: a library's own code runs without `string` when it loads.)
local CODE_TEXT = {
  [0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13', '14', '15',
  '16', '17', '18', '19', '20', '21', '22', '23', '24', '25', '26', '27', '28', '29', '30', '31',
}
local function code_text(code) return CODE_TEXT[code] or int_text(code) end

-- A record is stored as "<version>:<payload>".
local function version_of(raw)
  if not raw then return nil end
  return string.match(raw, '^(%d+):')
end

-- The customer index is one hash, number -> "id,id,...": most customers
-- have one service, and a hash field costs far less than a set per
-- customer. A number with many services (a placeholder such as "0") moves
-- to a set of its own, marked "*" in the hash, so no write rewrites a long
-- list. The index of waiting services by device ('qdev', for the
-- positions pushed to devices) is kept the same way.
local LIST_MAX = 16

local function list_add(name, field, id)
  local k = P .. name
  -- Most numbers and devices have no other service: one call then.
  if redis.call('HSETNX', k, field, id) == 1 then return end
  local ids = redis.call('HGET', k, field)
  if ids == '*' then
    redis.call('SADD', k .. ':' .. field, id)
  else
    local n = 1
    for _ in string.gmatch(ids, ',') do n = n + 1 end
    if n >= LIST_MAX then
      local set = k .. ':' .. field
      for other in string.gmatch(ids, '[^,]+') do redis.call('SADD', set, other) end
      redis.call('SADD', set, id)
      redis.call('HSET', k, field, '*')
    else
      redis.call('HSET', k, field, ids .. ',' .. id)
    end
  end
end

local function list_remove(name, field, id)
  local k = P .. name
  local ids = redis.call('HGET', k, field)
  if not ids then return end
  if ids == '*' then
    local set = k .. ':' .. field
    redis.call('SREM', set, id)
    if redis.call('SCARD', set) == 0 then redis.call('HDEL', k, field) end
    return
  end
  local left = {}
  for other in string.gmatch(ids, '[^,]+') do
    if other ~= id then table.insert(left, other) end
  end
  if #left == 0 then redis.call('HDEL', k, field)
  else redis.call('HSET', k, field, table.concat(left, ',')) end
end

-- The services listed under `field` of index `name`.
local function list_members(name, field)
  local ids = redis.call('HGET', P .. name, field)
  if not ids then return {} end
  if ids == '*' then return redis.call('SMEMBERS', P .. name .. ':' .. field) end
  local list = {}
  for other in string.gmatch(ids, '[^,]+') do table.insert(list, other) end
  return list
end

-- An index entry: MessagePack as written now (a third smaller than JSON,
-- and read faster), JSON as written before. Written now, it is two maps:
-- what a read of a waiting service's place needs, then what only writes
-- read (the customer, timers, agent, seat, room, outboxes); written
-- before, one map with every field.
local function decode_ix(raw)
  if string.byte(raw, 1) == 123 then return cjson.decode(raw) end
  local ix, rest = cmsgpack.unpack(raw)
  if rest then
    for k, v in pairs(rest) do ix[k] = v end
  end
  return ix
end

-- The first map of an entry only: state, scenario, queue, the member's
-- fields, device and deadline, in about half the work of decode_ix.
local function decode_place(raw)
  if string.byte(raw, 1) == 123 then return cjson.decode(raw) end
  local _, ix = cmsgpack.unpack_one(raw)
  return ix
end

-- Calls f(id, entry) for every index entry, a page at a time (what the
-- scripts run when a node connects use to make a derived index again).
local function each_index_entry(f)
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', P .. 'idx', cursor, 'COUNT', '1000')
    cursor = page[1]
    local fields = page[2]
    for i = 1, #fields, 2 do f(fields[i], decode_ix(fields[i + 1])) end
  until cursor == '0'
end

-- The set of the services in one state of one scenario: one set per
-- (state, scenario) rather than a set per state and another per scenario,
-- so a service is named once, not twice (a scenario's services are the
-- union over its states, a state's the union over 'scenarios').
local function ids_key(ix) return P .. 'ids:' .. ix.s .. ':' .. ix.n end

-- The outboxes' depth (`/metrics`): the hash 'outboxes', fields od (the
-- devices') and oa (the agents'), summed over the index entries, which
-- hold an active service's outbox lengths. Counts entry `ix` in and `old`
-- out (either may be nil), in one HINCRBY per field that changed.
local function outbox_add(f, ix, old)
  local n = tonumber(ix and ix[f] or 0) - tonumber(old and old[f] or 0)
  if n ~= 0 then redis.call('HINCRBY', P .. 'outboxes', f, int_text(n)) end
end
local function outboxes_add(ix, old)
  outbox_add('od', ix, old)
  outbox_add('oa', ix, old)
end

local function cust_add(number, id) list_add('cust', number, id) end
local function cust_remove(number, id) list_remove('cust', number, id) end

-- The device whose waiting service this index entry is (nil when it does
-- not wait, or has no device): `w`, or `v` in an entry written when queue
-- members carried the device.
local function waiting_device(ix)
  if not (ix and ix.q) then return nil end
  local d = ix.w or ix.v
  if d and d ~= '' then return d end
  return nil
end

-- A queue member: order prefix, id, skills and, only in a member written
-- when members carried the device (its entry has `v`), the device; then,
-- only when there is either, the preferred agent and the video flag (so a
-- member without them is exactly what was written before they existed).
local function queue_member(id, ix)
  local m = ix.p .. id .. '\31' .. (ix.k or '') .. '\31' .. (ix.v or '')
  if ix.pa or ix.vd or ix.dc or ix.rt then
    m = m .. '\31' .. (ix.pa or '') .. '\31' .. (ix.vd and '1' or '')
  end
  -- The agents who declined its preview, only when there are any (or a
  -- route follows); then the URS route, only when there is one.
  if ix.dc or ix.rt then m = m .. '\31' .. (ix.dc or '') end
  if ix.rt then m = m .. '\31' .. ix.rt end
  return m
end

-- The member as written before members carried the device.
local function legacy_member(id, ix)
  return ix.p .. id .. '\31' .. (ix.k or '')
end

-- The 0-based rank of service `id` in the queue key `qk`, under either
-- form of its member; nil when it is not there.
local function rank_of(qk, id, ix)
  return redis.call('ZRANK', qk, queue_member(id, ix))
    or redis.call('ZRANK', qk, legacy_member(id, ix))
end

-- A service's timers as its index entry lists them, each {code, due ms,
-- member}: `ts` (numbers) names the member `<id>|<code>`, scored by the due
-- time until a node claims it; `t` (due times as text), in an entry written
-- before, names `<id>|<code>|<due ms>`.
local function timers_of(id, ix)
  -- A write asks more than once for the same entry's timers; an entry is
  -- a table decoded for this call only (never written back), so the list
  -- is kept in it.
  if ix.timers_of then return ix.timers_of end
  local out = {}
  for _, t in ipairs(ix.ts or {}) do
    table.insert(out, {t[1], tonumber(t[2]), id .. '|' .. code_text(t[1])})
  end
  for _, t in ipairs(ix.t or {}) do
    table.insert(out, {t[1], tonumber(t[2]), id .. '|' .. code_text(t[1]) .. '|' .. t[2]})
  end
  ix.timers_of = out
  return out
end

-- Whether the purge finds this service through its timers, so it need not
-- be in 'deadlines' (where a member costs 145 bytes): it holds a timer due
-- GRACE_MS or more before its storage deadline (every active service's
-- TTL timer is, at its expiration), so once the deadline has passed that
-- timer is overdue by GRACE_MS, claimed or not for a lease at most.
local function found_by_timer(id, ix)
  local d = tonumber(ix.d)
  for _, t in ipairs(timers_of(id, ix)) do
    if t[2] + GRACE_MS <= d then return true end
  end
  return false
end

-- The service a timer member is of, and its index entry (nil when it has
-- none): `<id>|<code>`, or `<id>|<code>|<due ms>` as written before.
local function timer_owner(m)
  local id = string.match(m, '^(.*)|%d+$')
  local raw = id and redis.call('HGET', P .. 'idx', id)
  if not raw then
    id = string.match(m, '^(.*)|%d+|%d+$')
    raw = id and redis.call('HGET', P .. 'idx', id)
  end
  return id, raw and decode_ix(raw)
end

-- The capacity hash, queue -> the summed max_concurrent of its ready
-- agents (the EWT's input): adds (sign 1) or takes away (-1) the share of
-- the agent whose hash is `key`.
local function capacity_add(key, sign)
  local a = redis.call('HMGET', key, 'p', 'max')
  if not a[1] then return end
  local max = tonumber(a[2] or '0') * sign
  for _, q in ipairs(cjson.decode(a[1]).queues or {}) do
    if redis.call('HINCRBY', P .. 'capacity', q, int_text(max)) <= 0 then
      redis.call('HDEL', P .. 'capacity', q)
    end
  end
end

-- Removes field `field` of hash `key` if it still names service `id`.
local function hdel_if(key, field, id)
  if redis.call('HGET', key, field) == id then redis.call('HDEL', key, field) end
end

-- Whether service `id` is stored: it has an index entry, its deadline is
-- after `now` and Redis has not expired its record.
local function is_stored(id, now)
  local raw = redis.call('HGET', P .. 'idx', id)
  if not raw then return false end
  if tonumber(decode_place(raw).d) <= now then return false end
  return redis.call('EXISTS', P .. 'svc:' .. id) == 1
end

-- A create's guards (put_new): whether customer `c` already has `max`
-- active services in scenario `n`, and whether scenario `n` already has
-- `max` active services.
local function customer_full(c, n, max, now)
  local active = 0
  for _, other in ipairs(list_members('cust', c)) do
    local raw = redis.call('HGET', P .. 'idx', other)
    if raw then
      local ix = decode_place(raw)
      if ix.n == n and ix.s ~= 'completed' and tonumber(ix.d) > now then
        active = active + 1
        if active >= max then return true end
      end
    end
  end
  return false
end
local function scenario_full(n, max)
  local active = 0
  for _, state in ipairs(ACTIVE_STATES) do
    active = active + redis.call('SCARD', P .. 'ids:' .. state .. ':' .. n)
  end
  return active >= max
end

-- Removes everything `ix` put in the indexes for service `id`, except the
-- timers listed in `keep` (member -> true) and except the agent load when
-- `keep_agent` is set.
local function undo(id, ix, keep, keep_agent)
  cust_remove(ix.c, id)
  local device = waiting_device(ix)
  if device then list_remove('qdev', device, id) end
  redis.call('SREM', ids_key(ix), id)
  if ix.q then
    local qk = P .. 'queue:' .. ix.q
    redis.call('ZREM', qk, queue_member(id, ix), legacy_member(id, ix))
    if redis.call('ZCARD', qk) == 0 then redis.call('SREM', P .. 'queues', ix.q) end
  end
  if ix.a and not keep_agent then redis.call('SREM', P .. 'agent:' .. ix.a .. ':svc', id) end
  for _, t in ipairs(timers_of(id, ix)) do
    if not keep[t[3]] then redis.call('ZREM', P .. 'timers', t[3]) end
  end
  redis.call('ZREM', P .. 'deadlines', id)
  if ix.b then
    local sk = P .. 'seats:' .. ix.n
    if redis.call('HINCRBY', sk, ix.b, '-1') <= 0 then redis.call('HDEL', sk, ix.b) end
  end
  -- Guarded: an expired holder's code or agent may have been taken over.
  if ix.r then hdel_if(P .. 'rooms', ix.r, id) end
  if ix.ra then hdel_if(P .. 'roomagents', ix.ra, id) end
  outboxes_add(nil, ix)
  redis.call('HDEL', P .. 'idx', id)
end

-- Removes a service and its index entry.
local function forget(id, ix)
  undo(id, ix, {}, false)
  redis.call('DEL', P .. 'svc:' .. id)
end
"#;

/// put(record, expected_version): compare-and-set plus every derived index.
///
/// KEYS[1] = the record's key. ARGV = prefix, id, expected version ('' when
/// creating), the stored value ("<version>:<payload>"), index entry, ms
/// to keep the record (a whole number, at least 1: `SET ... PX` is given
/// it as it is), now in ms, and for a guarded create the most active
/// services of its customer and of its scenario ('' for no limit), then the
/// due time of each of the entry's timers (`ts`), in its order, as text
/// (made in Lua, each would cost a float format). Answers
/// OK, EXISTS, MISSING, CONFLICT, CUSTOMER, SCENARIO (a guard refused), FULL,
/// `AGENT:<why>`, ROOM (another stored service has the room code) or
/// `INROOM:<service>` (the agent is in that other service's live room).
const PUT: &str = r#"
local id, expected, value, ixraw = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = tonumber(ARGV[7])
local wake = false

local oldraw = redis.call('HGET', P .. 'idx', id)
-- Only this script and create write a record, always with its index
-- entry, and `forget` removes both: a create that finds no entry has no
-- record to read (one call fewer).
local stored = nil
if oldraw or expected ~= '' then stored = redis.call('GET', KEYS[1]) end
-- The very same write again (a client retry after a lost answer): done already.
if stored == value then return 'OK' end
local old = oldraw and decode_ix(oldraw) or nil
local cur = version_of(stored)
-- A record past its deadline (or already expired by Redis) no longer exists.
if old and (tonumber(old.d) <= now or not cur) then
  forget(id, old)
  old, oldraw, cur = nil, nil, nil
end

if expected == '' then
  if cur then return 'EXISTS' end
else
  if not cur then return 'MISSING' end
  if cur ~= expected then return 'CONFLICT' end
end

local new = decode_ix(ixraw)

-- A guarded create (put_new): the customer's active services in the
-- scenario, then the scenario's, counted in this same script so two
-- creates racing on different nodes cannot both pass.
local max_cust, max_scen = tonumber(ARGV[8]), tonumber(ARGV[9])
if max_cust and customer_full(new.c, new.n, max_cust, now) then return 'CUSTOMER' end
if max_scen and scenario_full(new.n, max_scen) then return 'SCENARIO' end
local old_agent = old and old.a or nil
if new.a and new.a ~= old_agent then
  local ak = P .. 'agent:' .. new.a
  local ag = redis.call('HMGET', ak, 'ready', 'max')
  if not ag[2] then return 'AGENT:unknown agent' end
  if ag[1] ~= '1' then return 'AGENT:not ready' end
  if redis.call('SCARD', ak .. ':svc') >= tonumber(ag[2]) then
    return 'AGENT:at its max_concurrent limit'
  end
end

-- A seat the record did not hold before must still be free in its slot.
if new.b and not (old and old.b == new.b and old.n == new.n) then
  local taken = tonumber(redis.call('HGET', P .. 'seats:' .. new.n, new.b) or '0')
  if taken >= tonumber(new.bc) then return 'FULL' end
end

-- A room code belongs to one stored service; a holder that is no longer
-- stored (past its deadline, awaiting the purge) does not count.
if new.r then
  local holder = redis.call('HGET', P .. 'rooms', new.r)
  if holder and holder ~= id and is_stored(holder, now) then return 'ROOM' end
end

-- An agent is in one live room at a time.
if new.ra then
  local holder = redis.call('HGET', P .. 'roomagents', new.ra)
  if holder and holder ~= id and is_stored(holder, now) then return 'INROOM:' .. holder end
end

-- Only what changed is written: a create adds every entry, a change of
-- state moves the service between two sets, and a timer both versions hold
-- (same kind, same due time) keeps its score, which may be a claim's lease
-- that a write must not cancel.
if old then
  if old.c ~= new.c then cust_remove(old.c, id); cust_add(new.c, id) end
  if waiting_device(old) ~= waiting_device(new) then
    if waiting_device(old) then list_remove('qdev', waiting_device(old), id) end
    if waiting_device(new) then list_add('qdev', waiting_device(new), id) end
  end
  if old.s ~= new.s or old.n ~= new.n then
    redis.call('SREM', ids_key(old), id)
    redis.call('SADD', ids_key(new), id)
    if old.n ~= new.n then redis.call('SADD', P .. 'scenarios', new.n) end
  end
  local old_member = old.q and queue_member(id, old) or nil
  local new_member = new.q and queue_member(id, new) or nil
  if old.q ~= new.q or old_member ~= new_member then
    if old.q then
      local qk = P .. 'queue:' .. old.q
      redis.call('ZREM', qk, old_member, legacy_member(id, old))
      if redis.call('ZCARD', qk) == 0 then redis.call('SREM', P .. 'queues', old.q) end
    end
    if new.q then
      redis.call('ZADD', P .. 'queue:' .. new.q, '0', new_member)
      redis.call('SADD', P .. 'queues', new.q)
    end
  end
  if old.a and old.a ~= new.a then redis.call('SREM', P .. 'agent:' .. old.a .. ':svc', id) end
  -- A service found by its timers is not in 'deadlines' (and an older
  -- node put every service there).
  local was_listed = not found_by_timer(id, old)
  if not found_by_timer(id, new) then
    if not was_listed or tonumber(old.d) ~= tonumber(new.d) then
      redis.call('ZADD', P .. 'deadlines', int_text(new.d), id)
    end
  elseif was_listed or old.t then
    redis.call('ZREM', P .. 'deadlines', id)
  end
  if old.b ~= new.b or old.n ~= new.n then
    if old.b then
      local sk = P .. 'seats:' .. old.n
      if redis.call('HINCRBY', sk, old.b, '-1') <= 0 then redis.call('HDEL', sk, old.b) end
    end
    if new.b then redis.call('HINCRBY', P .. 'seats:' .. new.n, new.b, '1') end
  end
  -- Guarded: an expired holder's code or agent may have been taken over.
  if old.r ~= new.r then
    if old.r then hdel_if(P .. 'rooms', old.r, id) end
    if new.r then redis.call('HSET', P .. 'rooms', new.r, id) end
  end
  if old.ra ~= new.ra then
    if old.ra then hdel_if(P .. 'roomagents', old.ra, id) end
    if new.ra then redis.call('HSET', P .. 'roomagents', new.ra, id) end
  end
else
  cust_add(new.c, id)
  if waiting_device(new) then list_add('qdev', waiting_device(new), id) end
  redis.call('SADD', ids_key(new), id)
  redis.call('SADD', P .. 'scenarios', new.n)
  if new.q then
    redis.call('ZADD', P .. 'queue:' .. new.q, '0', queue_member(id, new))
    redis.call('SADD', P .. 'queues', new.q)
  end
  if not found_by_timer(id, new) then redis.call('ZADD', P .. 'deadlines', int_text(new.d), id) end
  if new.b then redis.call('HINCRBY', P .. 'seats:' .. new.n, new.b, '1') end
  if new.r then redis.call('HSET', P .. 'rooms', new.r, id) end
  if new.ra then redis.call('HSET', P .. 'roomagents', new.ra, id) end
end
outboxes_add(new, old)
if new.a and new.a ~= old_agent then
  redis.call('SADD', P .. 'agent:' .. new.a .. ':svc', id)
  redis.call('HSET', P .. 'agent:' .. new.a, 'last', now)
end

-- Timers: the ones only the old version held go, the new ones come, and
-- one armed again for another time moves to it (ending a claim: the
-- claimer fires it with the time it read, which the machine refuses as
-- stale). One both versions hold at the same time keeps its score, which
-- may be a claim's lease. Other nodes' timer loops sleep until the
-- earliest timer they saw, so they are woken (PUBLISH) only when a timer
-- this write sets anew is then the earliest stored, and is due within
-- WAKE_MS (engine::store::WAKE_HORIZON): a loop looks at the store again
-- sooner than that anyway.
local had, had_kind = {}, {}
if old then
  for _, t in ipairs(timers_of(id, old)) do had[t[3]] = t[2]; had_kind[t[1]] = t end
end
-- The scores to set and the members to remove each go in one command.
local holds, fresh = {}, {}
local adds, gone = {}, {}
for i, t in ipairs(timers_of(id, new)) do
  local due, m = t[2], t[3]
  holds[m] = true
  if had[m] ~= due then
    -- The same timer under a member written when members carried the due
    -- time moves to the shorter member with its score (perhaps a lease).
    local was = had_kind[t[1]]
    local kept = was and was[2] == due and tonumber(redis.call('ZSCORE', P .. 'timers', was[3]))
    if kept then
      -- A lease as older nodes wrote it, a whole number: marked as one.
      if kept ~= due and kept % 1 == 0 then kept = kept - 0.5 end
      table.insert(adds, kept)
    else
      if due < now + WAKE_MS then fresh[m] = true end
      table.insert(adds, ARGV[9 + i] or int_text(due))
    end
    table.insert(adds, m)
  end
end
for m in pairs(had) do
  if not holds[m] then table.insert(gone, m) end
end
if #gone > 0 then redis.call('ZREM', P .. 'timers', unpack(gone)) end
if #adds > 0 then redis.call('ZADD', P .. 'timers', unpack(adds)) end
-- The head's member only: with its score, Redis 7.0 would print the score
-- with '%.17g' for the reply.
if next(fresh) then
  local head = redis.call('ZRANGE', P .. 'timers', '0', '0')[1]
  if head and fresh[head] then wake = true end
end

if ixraw ~= oldraw then redis.call('HSET', P .. 'idx', id, ixraw) end
redis.call('SET', KEYS[1], value, 'PX', ARGV[6])
if wake then redis.call('PUBLISH', P .. 'wake', 'timer') end
return 'OK'
"#;

/// create(record): put_new's usual case. The node gives what put would
/// derive from the index entry, ready to write, so nothing is decoded and
/// little is built here: Redis does 121,000 instructions per create
/// instead of 195,000 (`scripts/instructions-per-request create redis`).
/// Replayed against a redis-server alone, the same creates cost it 90,000
/// each this way, 163,000 through put, and 74,000 as a `MULTI`/`EXEC` of
/// the same commands (which could not check anything). Only for a record
/// that holds no agent, seat, room code, room agent or outbox message (the
/// node checks; put handles those).
///
/// KEYS[1] = the record's key. ARGV = prefix, id, the stored value, the
/// index entry, ms to keep the record, now in ms, the guard's limits ('' for
/// none: the customer's, the scenario's), then the customer number, the
/// waiting device (''), the scenario, the state, the queue ('' when not
/// queued), the queue member, the storage deadline when the purge does not
/// find the service by its timers (''), the member of the earliest timer due
/// within WAKE_MS (''), then each timer's score and member. Answers OK,
/// CUSTOMER, SCENARIO, or PUT: the service has an index entry already (this
/// write retried, a record past its deadline, or an id in use), which put
/// sorts out.
const CREATE: &str = r#"
local id, customer, device, scenario, queue = ARGV[2], ARGV[9], ARGV[10], ARGV[11], ARGV[13]
-- The entry first: written only if the service has none.
if redis.call('HSETNX', P .. 'idx', id, ARGV[4]) == 0 then return 'PUT' end
local max_cust, max_scen = tonumber(ARGV[7]), tonumber(ARGV[8])
if max_cust and customer_full(customer, scenario, max_cust, tonumber(ARGV[6])) then
  redis.call('HDEL', P .. 'idx', id)
  return 'CUSTOMER'
end
if max_scen and scenario_full(scenario, max_scen) then
  redis.call('HDEL', P .. 'idx', id)
  return 'SCENARIO'
end
cust_add(customer, id)
if device ~= '' then list_add('qdev', device, id) end
redis.call('SADD', P .. 'ids:' .. ARGV[12] .. ':' .. scenario, id)
redis.call('SADD', P .. 'scenarios', scenario)
if queue ~= '' then
  redis.call('ZADD', P .. 'queue:' .. queue, '0', ARGV[14])
  redis.call('SADD', P .. 'queues', queue)
end
if ARGV[15] ~= '' then redis.call('ZADD', P .. 'deadlines', ARGV[15], id) end
if #ARGV > 16 then redis.call('ZADD', P .. 'timers', unpack(ARGV, 17)) end
if ARGV[16] ~= '' and redis.call('ZRANGE', P .. 'timers', '0', '0')[1] == ARGV[16] then
  redis.call('PUBLISH', P .. 'wake', 'timer')
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
return 'OK'
"#;

/// purge(now, limit): forgets records whose storage deadline has passed:
/// those in 'deadlines', then those found by a timer overdue by the grace
/// (`found_by_timer`). ARGV = prefix, now in ms, limit, and how many of
/// those overdue timers to skip (ones a previous page found still live: a
/// backlog after an outage must not hide the expired ones behind it).
/// Answers how many were forgotten, whether there may be more (a full
/// page), and how many overdue timers of live services this page skipped.
const PURGE: &str = r#"
local now, limit, skip = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local forgotten = 0
local ids = redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', ARGV[2], 'LIMIT', '0', ARGV[3])
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', P .. 'idx', id)
  local ix = raw and decode_ix(raw)
  if not ix then
    redis.call('ZREM', P .. 'deadlines', id)
    redis.call('DEL', P .. 'svc:' .. id)
    forgotten = forgotten + 1
  elseif tonumber(ix.d) <= now then
    forget(id, ix)
    forgotten = forgotten + 1
  elseif found_by_timer(id, ix) then
    -- Put here by an older node, which listed every service.
    redis.call('ZREM', P .. 'deadlines', id)
  else
    redis.call('ZADD', P .. 'deadlines', int_text(tonumber(ix.d)), id)
  end
end
if #ids == limit then return {forgotten, 1, 0} end
local skipped = 0
local overdue = redis.call('ZRANGEBYSCORE', P .. 'timers', '-inf', now - GRACE_MS, 'LIMIT', skip, limit - #ids)
for _, m in ipairs(overdue) do
  local id, ix = timer_owner(m)
  if ix and tonumber(ix.d) <= now then
    forget(id, ix)
    forgotten = forgotten + 1
  elseif ix then
    skipped = skipped + 1
  else
    -- No service lists it.
    redis.call('ZREM', P .. 'timers', m)
  end
end
return {forgotten, #overdue == limit - #ids and 1 or 0, skipped}
"#;

/// position(queue, id): 1-based rank and queue length, or nothing.
/// ARGV = prefix, queue, id.
const POSITION: &str = r#"
local id = ARGV[3]
local raw = redis.call('HGET', P .. 'idx', id)
if not raw then return false end
local ix = decode_place(raw)
if ix.q ~= ARGV[2] then return false end
local qk = P .. 'queue:' .. ix.q
local rank = rank_of(qk, id, ix)
if not rank then return false end
return {rank + 1, redis.call('ZCARD', qk)}
"#;

/// device_positions(devices): each device's waiting services with their
/// places. ARGV = prefix, then the devices. Answers a flat list: device,
/// id, position, waiting; four per service.
const DEVICE_POSITIONS: &str = r#"
local out = {}
for i = 2, #ARGV do
  local device = ARGV[i]
  for _, id in ipairs(list_members('qdev', device)) do
    local raw = redis.call('HGET', P .. 'idx', id)
    local ix = raw and decode_place(raw)
    if waiting_device(ix) == device then
      local qk = P .. 'queue:' .. ix.q
      local rank = rank_of(qk, id, ix)
      if rank then
        table.insert(out, device)
        table.insert(out, id)
        table.insert(out, rank + 1)
        table.insert(out, redis.call('ZCARD', qk))
      end
    end
  end
end
return out
"#;

/// rebuild_waiting_devices: the index of waiting services by device, made
/// from the index entries when a deployment from before it has none (and
/// services wait). ARGV = prefix.
const REBUILD_WAITING_DEVICES: &str = r#"
if redis.call('EXISTS', P .. 'qdev') == 1 or redis.call('SCARD', P .. 'queues') == 0 then
  return 0
end
local n = 0
each_index_entry(function(id, ix)
  if waiting_device(ix) then
    list_add('qdev', waiting_device(ix), id)
    n = n + 1
  end
end)
return n
"#;

/// merge_state_sets: the sets of services by (state, scenario), made from
/// the index entries when a deployment from before them still has the
/// sets by state and by scenario (`state:<state>`, `scen:<scenario>`),
/// which are then deleted. ARGV = prefix. Answers the services moved.
const MERGE_STATE_SETS: &str = r#"
local old = {}
for _, state in ipairs(ALL_STATES) do
  if redis.call('EXISTS', P .. 'state:' .. state) == 1 then table.insert(old, P .. 'state:' .. state) end
end
if #old == 0 then return 0 end
local n = 0
local scenarios = {}
each_index_entry(function(id, ix)
  redis.call('SADD', ids_key(ix), id)
  if not scenarios[ix.n] then
    scenarios[ix.n] = true
    redis.call('SADD', P .. 'scenarios', ix.n)
    table.insert(old, P .. 'scen:' .. ix.n)
  end
  n = n + 1
end)
for _, key in ipairs(old) do redis.call('DEL', key) end
return n
"#;

/// queue_oldest: the earliest `since` of a queue's members (15 digits of
/// ms), or nil when it is empty. KEYS[1] = the queue. Members sort by the
/// inverted priority (10 digits), then `since`: the oldest is the first
/// member of one of the priority levels, so it jumps from level to level
/// (ZRANGEBYLEX) instead of reading the queue.
const QUEUE_OLDEST: &str = r#"
local oldest = nil
local from = '-'
while true do
  local first = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', '0', '1')[1]
  if not first then break end
  local since = string.sub(first, 11, 25)
  if not oldest or since < oldest then oldest = since end
  from = '[' .. string.format('%010d', tonumber(string.sub(first, 1, 10)) + 1)
end
return oldest
"#;

/// add_sample: pushes a sample onto a queue's list of one kind, keeps the
/// last `window`, and writes the list's count and sum into the queue's
/// sums hash, so check-queue-position reads two numbers a kind instead of
/// the whole list (up to 50 samples each parsed in Lua: 427,000
/// instructions of Redis a request against 88,000 without samples). The
/// sum is made as the reader made it (newest first in the list, summed
/// from its end), so it is the same number. KEYS[1] = the list, KEYS[2] =
/// the sums hash. ARGV = the sample, the last index kept (window - 1), the
/// kind's name.
const ADD_SAMPLE: &str = r#"
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], '0', ARGV[2])
local samples = redis.call('LRANGE', KEYS[1], '0', '-1')
local sum = 0
for i = #samples, 1, -1 do sum = sum + tonumber(samples[i]) end
local text
if sum % 1 == 0 and math.abs(sum) < 1e15 then text = string.format('%d', sum)
else text = string.format('%.17g', sum) end
redis.call('HSET', KEYS[2], ARGV[3] .. ':n', string.format('%d', #samples), ARGV[3] .. ':sum', text)
return 1
"#;

/// room(code, now): the service holding a room code, while it is stored.
/// KEYS[1] = the rooms hash. ARGV = prefix, code, now in ms.
const ROOM: &str = r#"
local id = redis.call('HGET', KEYS[1], ARGV[2])
if id and is_stored(id, tonumber(ARGV[3])) then return id end
return false
"#;

/// claim(now, until, limit): due timers, postponed to `until` (the lease),
/// or only listed when `until` is ''. KEYS[1] = the timers zset. ARGV =
/// prefix, now ms, until ms, limit. Answers {id, kind code, due ms} per
/// timer.
///
/// A member `<id>|<code>` does not carry its due time, but while no node
/// has claimed it its score is that time, a whole number of ms; a claim
/// scores it half a millisecond before the lease's end (so it is due again
/// at that ms, and `next_timer` rounds it up), so a score with a fraction
/// is a lease (a double holds ms to well under 0.5 until the year
/// 270,000). Only a timer whose lease ran out (its claimer died) has its due
/// time read from its service's index entry. A member its service's entry
/// no longer lists is removed then, or it would come back after every
/// lease.
const CLAIM: &str = r#"
local claim = ARGV[3] ~= ''
local out = {}
-- Every claimed member gets the lease in one ZADD at the end, its score
-- written as text once (see int_text).
local lease = claim and string.format('%.1f', tonumber(ARGV[3]) - 0.5)
local leased = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', '0', ARGV[4])
for i = 1, #due, 2 do
  local m, score = due[i], tonumber(due[i + 1])
  local found, ix = nil, nil
  -- A code has one or two digits; a member written before ends with 13.
  local id, code = string.match(m, '^(.*)|(%d%d?)$')
  if id and score % 1 == 0 then
    found = {id, tonumber(code), score}
  else
    local owner
    owner, ix = timer_owner(m)
    if claim and ix and tonumber(ix.d) <= tonumber(ARGV[2]) then
      -- Its lease ran out and its service's storage deadline has passed:
      -- firing it failed (the service is gone) and would fail again, and
      -- the purge, which looks for timers overdue by the grace, would not
      -- see one leased again and again.
      forget(owner, ix)
      ix = 'forgotten'
    end
    for _, t in ipairs(type(ix) == 'table' and ix.ts or {}) do
      if int_text(t[1]) == code then found = {owner, t[1], t[2]} end
    end
    if not found and ix ~= 'forgotten' then
      -- A member written when members carried the due time.
      local lid, lcode, ldue = string.match(m, '^(.*)|(%d+)|(%d+)$')
      if lid then found = {lid, tonumber(lcode), tonumber(ldue)} end
    end
  end
  if found then
    if claim then
      table.insert(leased, lease)
      table.insert(leased, m)
    end
    table.insert(out, found)
  elseif claim and ix ~= 'forgotten' then
    redis.call('ZREM', KEYS[1], m)
  end
end
-- XX: a member a forget above removed stays removed.
if #leased > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(leased)) end
return out
"#;

/// put_agent(profile): KEYS[1] = the agent's hash. ARGV = prefix, id,
/// profile JSON, max_concurrent. A new agent starts not ready; a ready
/// one's share of its queues' capacity follows its new profile.
const PUT_AGENT: &str = r#"
local ready = redis.call('HGET', KEYS[1], 'ready') == '1'
if ready then capacity_add(KEYS[1], -1) end
redis.call('HSET', KEYS[1], 'p', ARGV[3], 'max', ARGV[4])
redis.call('HSETNX', KEYS[1], 'ready', '0')
redis.call('SADD', P .. 'agents', ARGV[2])
if ready then capacity_add(KEYS[1], 1) end
return 'OK'
"#;

/// set_agent_ready: KEYS[1] = the agent's hash. ARGV = prefix, '1' or '0'.
/// Answers 0 for an unknown agent.
const SET_AGENT_READY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local was = redis.call('HGET', KEYS[1], 'ready')
redis.call('HSET', KEYS[1], 'ready', ARGV[2])
if was ~= ARGV[2] then capacity_add(KEYS[1], ARGV[2] == '1' and 1 or -1) end
return 1
"#;

/// rebuild_capacity: the capacity hash made again from the agents, in
/// one step (on connecting: a deployment from before it kept none).
/// ARGV = prefix.
const REBUILD_CAPACITY: &str = r#"
redis.call('DEL', P .. 'capacity')
for _, agent in ipairs(redis.call('SMEMBERS', P .. 'agents')) do
  local key = P .. 'agent:' .. agent
  if redis.call('HGET', key, 'ready') == '1' then capacity_add(key, 1) end
end
return 1
"#;

/// standing(id): what check-queue-position needs, in one step. KEYS[1] =
/// the record's key. ARGV = prefix, id. Answers nothing for no record,
/// {value} for one that does not wait in a queue, else, from its index
/// entry and without the record, {state, position, waiting, the number of
/// wait samples and their sum, the same of the handle samples, the ready
/// capacity, scenario, storage deadline ms}.
///
/// The samples are summed here, oldest first as `QueueStats` sums them (to
/// the bit: each is read back as the double it was written as, and the sum
/// goes out as 17 digits), so a queue's full window of samples is two
/// numbers in the answer instead of a hundred.
const STANDING: &str = r#"
local id = ARGV[2]
local ixraw = redis.call('HGET', P .. 'idx', id)
local ix = ixraw and decode_place(ixraw)
local rank = nil
if ix and ix.q then rank = rank_of(P .. 'queue:' .. ix.q, id, ix) end
if not rank then
  local raw = redis.call('GET', KEYS[1])
  if not raw then return false end
  return {raw}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local qk = P .. 'queue:' .. ix.q
-- Newest first in the list (LPUSH): summed from its end. Only for a list
-- whose sums a node before the sums hash left unwritten.
local function summed(kind)
  local samples = redis.call('LRANGE', P .. 'stats:' .. ix.q .. ':' .. kind, '0', '-1')
  local sum = 0
  for i = #samples, 1, -1 do sum = sum + tonumber(samples[i]) end
  -- A whole sum (none, or whole seconds) has the same digits by '%d',
  -- without glibc's float printing.
  if sum % 1 == 0 and math.abs(sum) < 1e15 then return #samples, int_text(sum) end
  return #samples, string.format('%.17g', sum)
end
-- The count and sum of each kind, as add_sample wrote them.
local sums = redis.call('HMGET', P .. 'stats:' .. ix.q .. ':sums',
  'wait:n', 'wait:sum', 'handle:n', 'handle:sum')
local waits, wait_sum, handles, handle_sum = 0, '0', 0, '0'
local lists = P .. 'stats:' .. ix.q .. ':'
-- No sums of a kind: no sample yet (then no list either: one EXISTS for
-- both), or a list that a node before the sums wrote, summed here.
if (sums[1] and sums[3]) or redis.call('EXISTS', lists .. 'wait', lists .. 'handle') > 0 then
  if sums[1] and sums[2] then waits, wait_sum = tonumber(sums[1]), sums[2]
  else waits, wait_sum = summed('wait') end
  if sums[3] and sums[4] then handles, handle_sum = tonumber(sums[3]), sums[4]
  else handles, handle_sum = summed('handle') end
end
return {
  ix.s, rank + 1, redis.call('ZCARD', qk), waits, wait_sum, handles, handle_sum,
  tonumber(redis.call('HGET', P .. 'capacity', ix.q) or '0'),
  -- The deadline as a number: Redis answers a Lua number as an integer,
  -- without printing it (int_text would, at 2,500 instructions).
  ix.n, tonumber(ix.d),
}
"#;

/// put_agent_key: KEYS[1] = the agent's key names, KEYS[2] = the key's
/// entry. ARGV = name, id, entry JSON. Answers 0 when the name is taken.
const PUT_AGENT_KEY: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
return 1
"#;

/// revoke_agent_key: KEYS[1] = the agent's key names. ARGV = prefix, name.
/// Answers 1 when there was such a key.
const REVOKE_AGENT_KEY: &str = r#"
local id = redis.call('HGET', KEYS[1], ARGV[2])
if not id then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('DEL', ARGV[1] .. 'key:' .. id)
return 1
"#;

/// count_quotas: KEYS = the quotas' hashes. ARGV = now ms, then limit and
/// window ms per key. All or nothing: answers {-1, 0} when every quota had
/// room and was counted, else {index, window end ms} of the first full one.
/// A window starts with the first request counted in it; the key's expiry
/// only collects what nobody counts against any more.
const COUNT_QUOTAS: &str = r#"
local now = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'c', 'e')
  local c, e = tonumber(v[1]), tonumber(v[2])
  if c and e and e > now and c >= tonumber(ARGV[2 * i]) then return {i - 1, e} end
end
for i, k in ipairs(KEYS) do
  local window = tonumber(ARGV[2 * i + 1])
  local e = tonumber(redis.call('HGET', k, 'e'))
  if not e or e <= now then
    redis.call('HSET', k, 'c', '1', 'e', string.format('%d', now + window))
    redis.call('PEXPIRE', k, ARGV[2 * i + 1])
  else
    redis.call('HINCRBY', k, 'c', '1')
  end
end
return {-1, 0}
"#;

/// claim_idempotency: KEYS[1] = the key. ARGV = now ms, lease ms. The value
/// is `c|<until ms>` (claimed) or `a|<until ms>|<answer>` (answered).
/// Answers {'claimed'}, {'busy'} or {'answered', answer}.
const CLAIM_IDEMPOTENCY: &str = r#"
local now = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if v then
  local kind, untl, rest = string.match(v, '^(%a)|(%d+)|?(.*)$')
  if kind and tonumber(untl) > now then
    if kind == 'a' then return {'answered', rest} end
    return {'busy'}
  end
end
redis.call('SET', KEYS[1], 'c|' .. string.format('%d', now + tonumber(ARGV[2])), 'PX', ARGV[2])
return {'claimed'}
"#;

/// release_idempotency: KEYS[1] = the key; deletes it only while claimed,
/// so an answer is never forgotten early.
const RELEASE_IDEMPOTENCY: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'c|' then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// How the scripts run. As functions of one library (`FUNCTION LOAD`
/// once, then `FCALL`): the library's definitions are made once, when it
/// loads. As scripts (`EVALSHA`): every call runs its script from the top,
/// so it makes the prelude's functions and tables again, about 25,000
/// instructions of Redis a call (a sixth of a check-queue-position). Redis
/// before 7.0, or a proxy or an ACL without `FUNCTION`, gets scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    Functions,
    Scripts,
}

/// Every script: its name, its body, whether it starts with the prelude
/// (then ARGV[1] is the key prefix) and whether it only reads (a function
/// flagged `no-writes`, which Redis still runs when it is out of memory).
const ALL: [(&str, &str, bool, bool); 20] = [
    ("put", PUT, true, false),
    ("create", CREATE, true, false),
    ("purge", PURGE, true, false),
    ("position", POSITION, true, true),
    ("room", ROOM, true, true),
    ("claim", CLAIM, true, false),
    ("put_agent", PUT_AGENT, true, false),
    ("set_agent_ready", SET_AGENT_READY, true, false),
    ("put_agent_key", PUT_AGENT_KEY, false, false),
    ("revoke_agent_key", REVOKE_AGENT_KEY, false, false),
    ("count_quotas", COUNT_QUOTAS, false, false),
    ("claim_idempotency", CLAIM_IDEMPOTENCY, false, false),
    ("release_idempotency", RELEASE_IDEMPOTENCY, false, false),
    ("rebuild_capacity", REBUILD_CAPACITY, true, false),
    ("standing", STANDING, true, true),
    ("device_positions", DEVICE_POSITIONS, true, true),
    (
        "rebuild_waiting_devices",
        REBUILD_WAITING_DEVICES,
        true,
        false,
    ),
    ("merge_state_sets", MERGE_STATE_SETS, true, false),
    ("queue_oldest", QUEUE_OLDEST, false, true),
    ("add_sample", ADD_SAMPLE, false, false),
];

/// The constants the prelude's functions read, first.
fn constants() -> String {
    // The state names, as the keys spell them, for the scripts that go
    // over every state (or every state a service is active in).
    let names = |states: &mut dyn Iterator<Item = ServiceState>| {
        states
            .map(|s| format!("'{}'", state_name(s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "local ALL_STATES = {{{}}}\nlocal ACTIVE_STATES = {{{}}}\nlocal GRACE_MS = {}\nlocal WAKE_MS = {}\n",
        names(&mut ServiceState::ALL.into_iter()),
        names(
            &mut ServiceState::ALL
                .into_iter()
                .filter(|s| *s != ServiceState::Completed)
        ),
        engine::record::COMPLETED_GRACE.num_milliseconds(),
        engine::store::WAKE_HORIZON.as_millis(),
    )
}

/// The prelude's first line, which the library leaves unassigned: each
/// function sets `P` from its ARGV[1] when it is called.
const PRELUDE_PREFIX: &str = "local P = ARGV[1]\n";

/// The library: the constants and the prelude, then every script as a
/// function. Its name and its functions' names end in the hash of its
/// text, so nodes of two builds sharing a Redis (a rolling upgrade) each
/// call their own.
pub struct Library {
    code: String,
    /// A function's name is `callbackd_<script>_<suffix>`.
    suffix: String,
}

impl Library {
    pub fn new() -> Library {
        let prelude = PRELUDE
            .strip_prefix('\n')
            .and_then(|p| p.strip_prefix(PRELUDE_PREFIX))
            .expect("the prelude starts with `local P = ARGV[1]`");
        let text = |suffix: &str| {
            let mut text = format!("{}\nlocal P\n{prelude}\n", constants());
            for (name, script, with_prelude, read_only) in ALL {
                let set_prefix = if with_prelude { "P = ARGV[1]\n" } else { "" };
                let flags = if read_only { "{'no-writes'}" } else { "{}" };
                text.push_str(&format!(
                    "redis.register_function{{function_name = 'callbackd_{name}_{suffix}', \
                     flags = {flags}, callback = function(KEYS, ARGV)\n{set_prefix}{script}\nend}}\n"
                ));
            }
            text
        };
        // The hash of the text without the names it gives.
        let suffix = redis::Script::new(&text("")).get_hash()[..12].to_owned();
        Library {
            code: format!("#!lua name=callbackd_{suffix}\n{}", text(&suffix)),
            suffix,
        }
    }

    fn function(&self, script: &str) -> String {
        format!("callbackd_{script}_{}", self.suffix)
    }

    /// Loads the library (again, after a Redis lost it: a restart without
    /// persistence, or a new primary in a cluster).
    pub async fn load(&self, con: &mut impl ConnectionLike) -> RedisResult<()> {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.code)
            .query_async::<String>(con)
            .await
            .map(|_| ())
    }
}

/// One script, called by its function or by EVALSHA.
pub struct LuaFn {
    /// `FCALL <function>` or `EVALSHA <sha1>`.
    head: [String; 2],
    run_as: RunAs,
    script: Script,
    library: Arc<Library>,
}

impl LuaFn {
    /// A call with one key; `arg` adds the arguments.
    pub fn key<K: ToRedisArgs>(&self, key: K) -> Invocation<'_> {
        self.keys(&[key])
    }

    /// A call with these keys; `arg` adds the arguments.
    pub fn keys<K: ToRedisArgs>(&self, keys: &[K]) -> Invocation<'_> {
        // Room for the usual call (a record is most of a put), so the
        // command's buffers are not grown argument by argument.
        let mut cmd = Cmd::with_capacity(16, 1024);
        cmd.arg(&self.head[0])
            .arg(&self.head[1])
            .arg(keys.len())
            .arg(keys);
        Invocation { lua: self, cmd }
    }

    /// Whether the call failed because Redis does not have the function
    /// or the script (it restarted, or a new primary took the slot).
    fn missing(&self, e: &RedisError) -> bool {
        match self.run_as {
            RunAs::Functions => e
                .detail()
                .is_some_and(|d| d.starts_with("Function not found")),
            RunAs::Scripts => e.kind() == ErrorKind::Server(ServerErrorKind::NoScript),
        }
    }

    async fn load(&self, con: &mut impl ConnectionLike) -> RedisResult<()> {
        match self.run_as {
            RunAs::Functions => self.library.load(con).await,
            RunAs::Scripts => self.script.load_async(con).await.map(|_| ()),
        }
    }
}

/// A call of a script with its keys and arguments.
pub struct Invocation<'a> {
    lua: &'a LuaFn,
    cmd: Cmd,
}

impl Invocation<'_> {
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the call; loads the library or the script and runs it once
    /// more when Redis did not have it.
    pub async fn invoke<T: FromRedisValue>(&self, con: &mut impl ConnectionLike) -> RedisResult<T> {
        match self.cmd.query_async(con).await {
            Err(e) if self.lua.missing(&e) => {
                self.lua.load(con).await?;
                self.cmd.query_async(con).await
            }
            answer => answer,
        }
    }
}

pub struct Scripts {
    pub run_as: RunAs,
    pub put: LuaFn,
    pub create: LuaFn,
    pub purge: LuaFn,
    pub position: LuaFn,
    pub room: LuaFn,
    pub claim: LuaFn,
    pub put_agent: LuaFn,
    pub set_agent_ready: LuaFn,
    pub put_agent_key: LuaFn,
    pub revoke_agent_key: LuaFn,
    pub count_quotas: LuaFn,
    pub claim_idempotency: LuaFn,
    pub release_idempotency: LuaFn,
    pub rebuild_capacity: LuaFn,
    pub standing: LuaFn,
    pub device_positions: LuaFn,
    pub rebuild_waiting_devices: LuaFn,
    pub merge_state_sets: LuaFn,
    pub queue_oldest: LuaFn,
    pub add_sample: LuaFn,
}

impl Scripts {
    pub fn new(run_as: RunAs, library: Arc<Library>) -> Scripts {
        let prelude = format!("{}\n{PRELUDE}\n", constants());
        let lua = |name: &str| {
            let (_, body, with_prelude, _) = ALL
                .into_iter()
                .find(|s| s.0 == name)
                .expect("a script of ALL");
            let script = if with_prelude {
                Script::new(&format!("{prelude}{body}"))
            } else {
                Script::new(body)
            };
            let head = match run_as {
                RunAs::Functions => ["FCALL".to_owned(), library.function(name)],
                RunAs::Scripts => ["EVALSHA".to_owned(), script.get_hash().to_owned()],
            };
            LuaFn {
                head,
                run_as,
                script,
                library: library.clone(),
            }
        };
        Scripts {
            run_as,
            put: lua("put"),
            create: lua("create"),
            purge: lua("purge"),
            position: lua("position"),
            room: lua("room"),
            claim: lua("claim"),
            put_agent: lua("put_agent"),
            set_agent_ready: lua("set_agent_ready"),
            put_agent_key: lua("put_agent_key"),
            revoke_agent_key: lua("revoke_agent_key"),
            count_quotas: lua("count_quotas"),
            claim_idempotency: lua("claim_idempotency"),
            release_idempotency: lua("release_idempotency"),
            rebuild_capacity: lua("rebuild_capacity"),
            standing: lua("standing"),
            device_positions: lua("device_positions"),
            rebuild_waiting_devices: lua("rebuild_waiting_devices"),
            merge_state_sets: lua("merge_state_sets"),
            queue_oldest: lua("queue_oldest"),
            add_sample: lua("add_sample"),
        }
    }

    /// Loads the library, or every script when Redis runs scripts:
    /// otherwise the first requests after a start each find theirs
    /// missing and load it again, all at once.
    pub async fn load(&self, con: &mut impl ConnectionLike) -> RedisResult<()> {
        match self.run_as {
            RunAs::Functions => self.put.library.load(con).await,
            RunAs::Scripts => {
                for lua in self.all() {
                    lua.script.load_async(con).await?;
                }
                Ok(())
            }
        }
    }

    fn all(&self) -> [&LuaFn; 20] {
        [
            &self.put,
            &self.create,
            &self.purge,
            &self.position,
            &self.room,
            &self.claim,
            &self.put_agent,
            &self.set_agent_ready,
            &self.put_agent_key,
            &self.revoke_agent_key,
            &self.count_quotas,
            &self.claim_idempotency,
            &self.release_idempotency,
            &self.rebuild_capacity,
            &self.standing,
            &self.device_positions,
            &self.rebuild_waiting_devices,
            &self.merge_state_sets,
            &self.queue_oldest,
            &self.add_sample,
        ]
    }
}
