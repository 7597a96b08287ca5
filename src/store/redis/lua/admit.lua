-- Decides whether a send may start, taking the lease and the idempotency key at once, and
-- reads what the send needs (the session and its newest turns) in the same step.
-- KEYS: meta, lease, idem, turns, ctok
-- ARGV: fence_ms (Redis' clock: past it the service has stopped waiting for this answer),
--       lease_token, lease_ms, now_ms, idem_key ('' for none), fingerprint, idem_ttl_ms,
--       tenant, tail (turns to read when the session has no context_window),
--       hold_ms (every key of an admitted session lives at least this long)
-- Returns {'admitted', meta_fields, turns} | {'missing'} | {'busy', pttl}
--       | {'replay', response} | {'in_use'} | {'reused'} | {'late'},
-- each with Redis' clock (ms) appended, which the service keeps its fences by.
-- Running it twice with the same token answers as running it once (the service sends it
-- again when its connection broke, not knowing whether the first run happened).
local t = redis.call('TIME')
local clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function answer(reply)
  reply[#reply + 1] = clock
  return reply
end
-- Run after the service gave up (Redis stalled, or the request sat in a queue): nobody
-- would hold the lease or learn the outcome, so nothing happens.
if clock > tonumber(ARGV[1]) then return answer({'late'}) end
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return answer({'missing'}) end
local cfg_json
for i = 1, #meta, 2 do
  if meta[i] == 'cfg' then cfg_json = meta[i + 1] end
end
local cfg = cjson.decode(cfg_json)
-- Another tenant's session answers exactly like an unknown one.
if cfg.tenant ~= ARGV[8] then return answer({'missing'}) end
local now = tonumber(ARGV[4])
-- A first run of this very admission took the lease (and the key) already.
local ours = redis.call('GET', KEYS[2]) == ARGV[2]
if ARGV[5] ~= '' and not ours then
  local raw = redis.call('HGET', KEYS[3], ARGV[5])
  if raw then
    local rec = cjson.decode(raw)
    local same = rec.fp == ARGV[6]
    if rec.state == 'done' and now - rec.at < tonumber(ARGV[7]) then
      if same then return answer({'replay', rec.response}) end
      return answer({'reused'})
    end
    -- A pending record counts only while its request still holds the lease.
    if rec.state == 'pending' and redis.call('GET', KEYS[2]) == rec.lease then
      if same then return answer({'in_use'}) end
      return answer({'reused'})
    end
  end
end
if not ours and not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return answer({'busy', redis.call('PTTL', KEYS[2])})
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[5],
    cjson.encode({state = 'pending', fp = ARGV[6], at = now, lease = ARGV[2]}))
  redis.call('PEXPIRE', KEYS[3], redis.call('PTTL', KEYS[1]))
end
-- The upstream call may outlast the session's remaining TTL: until its commit (which
-- refreshes the TTL) every key must still be there, or the conversation is lost.
local hold = tonumber(ARGV[10])
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4], KEYS[5]}) do
  local ttl = redis.call('PTTL', key)
  if ttl >= 0 and ttl < hold then redis.call('PEXPIRE', key, hold) end
end
-- The same rule as `tail_len` in store/mod.rs.
local tail = tonumber(ARGV[9])
if type(cfg.context_window) == 'number' then tail = cfg.context_window end
local turns = {}
if tail > 0 then turns = redis.call('LRANGE', KEYS[4], -tail, -1) end
return answer({'admitted', meta, turns})
