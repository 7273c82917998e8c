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

use redis::Script;

/// Functions every write script shares. `P` is the key prefix (`{ns}:`).
const PRELUDE: &str = r#"
local P = ARGV[1]

-- A record is stored as "<version>:<payload>".
local function version_of(raw)
  if not raw then return nil end
  return string.match(raw, '^(%d+):')
end

-- The customer index is one hash, number -> "id,id,...": most customers
-- have one service, and a hash field costs far less than a set per
-- customer. A number with many services (a placeholder such as "0") moves
-- to a set of its own, marked "*" in the hash, so no write rewrites a long list.
local CUST_LIST_MAX = 16

local function cust_add(number, id)
  local k = P .. 'cust'
  local ids = redis.call('HGET', k, number)
  if not ids then
    redis.call('HSET', k, number, id)
  elseif ids == '*' then
    redis.call('SADD', P .. 'cust:' .. number, id)
  else
    local n = 1
    for _ in string.gmatch(ids, ',') do n = n + 1 end
    if n >= CUST_LIST_MAX then
      local set = P .. 'cust:' .. number
      for other in string.gmatch(ids, '[^,]+') do redis.call('SADD', set, other) end
      redis.call('SADD', set, id)
      redis.call('HSET', k, number, '*')
    else
      redis.call('HSET', k, number, ids .. ',' .. id)
    end
  end
end

local function cust_remove(number, id)
  local k = P .. 'cust'
  local ids = redis.call('HGET', k, number)
  if not ids then return end
  if ids == '*' then
    local set = P .. 'cust:' .. number
    redis.call('SREM', set, id)
    if redis.call('SCARD', set) == 0 then redis.call('HDEL', k, number) end
    return
  end
  local left = {}
  for other in string.gmatch(ids, '[^,]+') do
    if other ~= id then table.insert(left, other) end
  end
  if #left == 0 then redis.call('HDEL', k, number)
  else redis.call('HSET', k, number, table.concat(left, ',')) end
end

-- A queue member: order prefix, id, skills and the owning device; then,
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

local function timer_member(id, t)
  return id .. '|' .. t[1] .. '|' .. t[2]
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
  if tonumber(cjson.decode(raw).d) <= now then return false end
  return redis.call('EXISTS', P .. 'svc:' .. id) == 1
end

-- Removes everything `ix` put in the indexes for service `id`, except the
-- timers listed in `keep` (member -> true) and except the agent load when
-- `keep_agent` is set.
local function undo(id, ix, keep, keep_agent)
  cust_remove(ix.c, id)
  redis.call('SREM', P .. 'state:' .. ix.s, id)
  redis.call('SREM', P .. 'scen:' .. ix.n, id)
  if ix.q then
    local qk = P .. 'queue:' .. ix.q
    redis.call('ZREM', qk, queue_member(id, ix), legacy_member(id, ix))
    if redis.call('ZCARD', qk) == 0 then redis.call('SREM', P .. 'queues', ix.q) end
  end
  if ix.a and not keep_agent then redis.call('SREM', P .. 'agent:' .. ix.a .. ':svc', id) end
  for _, t in ipairs(ix.t) do
    local m = timer_member(id, t)
    if not keep[m] then redis.call('ZREM', P .. 'timers', m) end
  end
  redis.call('ZREM', P .. 'deadlines', id)
  if ix.b then
    local sk = P .. 'seats:' .. ix.n
    if redis.call('HINCRBY', sk, ix.b, -1) <= 0 then redis.call('HDEL', sk, ix.b) end
  end
  -- Guarded: an expired holder's code or agent may have been taken over.
  if ix.r then hdel_if(P .. 'rooms', ix.r, id) end
  if ix.ra then hdel_if(P .. 'roomagents', ix.ra, id) end
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
/// creating), the stored value ("<version>:<payload>"), index entry JSON, ms
/// to keep the record, now in ms, and for a guarded create the most active
/// services of its customer and of its scenario ('' for no limit). Answers
/// OK, EXISTS, MISSING, CONFLICT, CUSTOMER, SCENARIO (a guard refused), FULL,
/// `AGENT:<why>`, ROOM (another stored service has the room code) or
/// `INROOM:<service>` (the agent is in that other service's live room).
const PUT: &str = r#"
local id, expected, value, ixraw = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local keep_ms, now = tonumber(ARGV[6]), tonumber(ARGV[7])

local stored = redis.call('GET', KEYS[1])
-- The very same write again (a client retry after a lost answer): done already.
if stored == value then return 'OK' end
local oldraw = redis.call('HGET', P .. 'idx', id)
local old = oldraw and cjson.decode(oldraw) or nil
local cur = version_of(stored)
-- A record past its deadline (or already expired by Redis) no longer exists.
if old and (tonumber(old.d) <= now or not cur) then
  forget(id, old)
  old, cur = nil, nil
end

if expected == '' then
  if cur then return 'EXISTS' end
else
  if not cur then return 'MISSING' end
  if cur ~= expected then return 'CONFLICT' end
end

local new = cjson.decode(ixraw)

-- A guarded create (put_new): the customer's active services in the
-- scenario, then the scenario's, counted in this same script so two
-- creates racing on different nodes cannot both pass.
local max_cust, max_scen = tonumber(ARGV[8]), tonumber(ARGV[9])
if max_cust then
  local ids = redis.call('HGET', P .. 'cust', new.c)
  local list = {}
  if ids == '*' then list = redis.call('SMEMBERS', P .. 'cust:' .. new.c)
  elseif ids then for other in string.gmatch(ids, '[^,]+') do table.insert(list, other) end end
  local active = 0
  for _, other in ipairs(list) do
    local raw = redis.call('HGET', P .. 'idx', other)
    if raw then
      local ix = cjson.decode(raw)
      if ix.n == new.n and ix.s ~= 'completed' and tonumber(ix.d) > now then
        active = active + 1
        if active >= max_cust then return 'CUSTOMER' end
      end
    end
  end
end
if max_scen then
  local scen = P .. 'scen:' .. new.n
  local done = P .. 'state:completed'
  local both = redis.pcall('SINTERCARD', 2, scen, done)
  -- SINTERCARD is Redis 7; before it, the intersection itself.
  if type(both) ~= 'number' then both = #redis.call('SINTER', scen, done) end
  if redis.call('SCARD', scen) - both >= max_scen then return 'SCENARIO' end
end
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

-- Timers both versions hold (same kind, same due time) keep their score:
-- that may be a claim's lease, which a write must not cancel.
local keep, armed = {}, false
for _, t in ipairs(new.t) do keep[timer_member(id, t)] = true end
if old then
  local had = {}
  for _, t in ipairs(old.t) do had[timer_member(id, t)] = true end
  for _, t in ipairs(new.t) do if not had[timer_member(id, t)] then armed = true end end
  undo(id, old, keep, new.a == old_agent)
else
  armed = #new.t > 0
end

cust_add(new.c, id)
redis.call('SADD', P .. 'state:' .. new.s, id)
redis.call('SADD', P .. 'scen:' .. new.n, id)
if new.q then
  redis.call('ZADD', P .. 'queue:' .. new.q, 0, queue_member(id, new))
  redis.call('SADD', P .. 'queues', new.q)
end
if new.a and new.a ~= old_agent then
  redis.call('SADD', P .. 'agent:' .. new.a .. ':svc', id)
  redis.call('HSET', P .. 'agent:' .. new.a, 'last', now)
end
for _, t in ipairs(new.t) do
  redis.call('ZADD', P .. 'timers', 'NX', t[2], timer_member(id, t))
end
redis.call('ZADD', P .. 'deadlines', new.d, id)
if new.b then redis.call('HINCRBY', P .. 'seats:' .. new.n, new.b, 1) end
if new.r then redis.call('HSET', P .. 'rooms', new.r, id) end
if new.ra then redis.call('HSET', P .. 'roomagents', new.ra, id) end
redis.call('HSET', P .. 'idx', id, ixraw)
redis.call('SET', KEYS[1], value, 'PX', math.max(keep_ms, 1))
if armed then redis.call('PUBLISH', P .. 'wake', 'timer') end
return 'OK'
"#;

/// purge(now, limit): forgets records whose storage deadline has passed.
/// ARGV = prefix, now in ms, limit. Answers how many were forgotten.
const PURGE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', P .. 'idx', id)
  if raw then forget(id, cjson.decode(raw)) else
    redis.call('ZREM', P .. 'deadlines', id)
    redis.call('DEL', P .. 'svc:' .. id)
  end
end
return #ids
"#;

/// position(queue, id): 1-based rank and queue length, or nothing.
/// ARGV = prefix, queue, id.
const POSITION: &str = r#"
local id = ARGV[3]
local raw = redis.call('HGET', P .. 'idx', id)
if not raw then return false end
local ix = cjson.decode(raw)
if ix.q ~= ARGV[2] then return false end
local qk = P .. 'queue:' .. ix.q
local rank = redis.call('ZRANK', qk, queue_member(id, ix))
  or redis.call('ZRANK', qk, legacy_member(id, ix))
if not rank then return false end
return {rank + 1, redis.call('ZCARD', qk)}
"#;

/// room(code, now): the service holding a room code, while it is stored.
/// KEYS[1] = the rooms hash. ARGV = prefix, code, now in ms.
const ROOM: &str = r#"
local id = redis.call('HGET', KEYS[1], ARGV[2])
if id and is_stored(id, tonumber(ARGV[3])) then return id end
return false
"#;

/// claim(now, until, limit): due timers, postponed to `until` (the lease).
/// KEYS[1] = the timers zset. ARGV = now ms, until ms, limit.
const CLAIM: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
return due
"#;

/// put_agent(profile): KEYS[1] = the agent's hash. ARGV = prefix, id,
/// profile JSON, max_concurrent. A new agent starts not ready.
const PUT_AGENT: &str = r#"
redis.call('HSET', KEYS[1], 'p', ARGV[3], 'max', ARGV[4])
redis.call('HSETNX', KEYS[1], 'ready', '0')
redis.call('SADD', P .. 'agents', ARGV[2])
return 'OK'
"#;

/// set_agent_ready: KEYS[1] = the agent's hash. ARGV = prefix, '1' or '0'.
/// Answers 0 for an unknown agent.
const SET_AGENT_READY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ready', ARGV[2])
return 1
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
    redis.call('HSET', k, 'c', 1, 'e', now + window)
    redis.call('PEXPIRE', k, window)
  else
    redis.call('HINCRBY', k, 'c', 1)
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
redis.call('SET', KEYS[1], 'c|' .. (now + tonumber(ARGV[2])), 'PX', ARGV[2])
return {'claimed'}
"#;

/// release_idempotency: KEYS[1] = the key; deletes it only while claimed,
/// so an answer is never forgotten early.
const RELEASE_IDEMPOTENCY: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'c|' then redis.call('DEL', KEYS[1]) end
return 1
"#;

pub struct Scripts {
    pub put: Script,
    pub purge: Script,
    pub position: Script,
    pub room: Script,
    pub claim: Script,
    pub put_agent: Script,
    pub set_agent_ready: Script,
    pub put_agent_key: Script,
    pub revoke_agent_key: Script,
    pub count_quotas: Script,
    pub claim_idempotency: Script,
    pub release_idempotency: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            put: with_prelude(PUT),
            purge: with_prelude(PURGE),
            position: with_prelude(POSITION),
            room: with_prelude(ROOM),
            claim: Script::new(CLAIM),
            put_agent: with_prelude(PUT_AGENT),
            set_agent_ready: with_prelude(SET_AGENT_READY),
            put_agent_key: Script::new(PUT_AGENT_KEY),
            revoke_agent_key: Script::new(REVOKE_AGENT_KEY),
            count_quotas: Script::new(COUNT_QUOTAS),
            claim_idempotency: Script::new(CLAIM_IDEMPOTENCY),
            release_idempotency: Script::new(RELEASE_IDEMPOTENCY),
        }
    }
}
