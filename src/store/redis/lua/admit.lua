-- Decides whether a send may start, taking the lease and the idempotency key at once, and
-- reads what the send needs (the session and its newest turns) in the same step.
-- KEYS: meta, lease, idem, turns
-- ARGV: lease_token, lease_ms, now_ms, idem_key ('' for none), fingerprint, idem_ttl_ms,
--       tenant, tail (turns to read when the session has no context_window)
-- Returns {'admitted', meta_fields, turns} | {'missing'} | {'busy', pttl}
--       | {'replay', response} | {'in_use'} | {'reused'}
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return {'missing'} end
local cfg_json
for i = 1, #meta, 2 do
  if meta[i] == 'cfg' then cfg_json = meta[i + 1] end
end
local cfg = cjson.decode(cfg_json)
-- Another tenant's session answers exactly like an unknown one.
if cfg.tenant ~= ARGV[7] then return {'missing'} end
local now = tonumber(ARGV[3])
if ARGV[4] ~= '' then
  local raw = redis.call('HGET', KEYS[3], ARGV[4])
  if raw then
    local rec = cjson.decode(raw)
    local same = rec.fp == ARGV[5]
    if rec.state == 'done' and now - rec.at < tonumber(ARGV[6]) then
      if same then return {'replay', rec.response} end
      return {'reused'}
    end
    -- A pending record counts only while its request still holds the lease.
    if rec.state == 'pending' and redis.call('GET', KEYS[2]) == rec.lease then
      if same then return {'in_use'} end
      return {'reused'}
    end
  end
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'busy', redis.call('PTTL', KEYS[2])}
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[4],
    cjson.encode({state = 'pending', fp = ARGV[5], at = now, lease = ARGV[1]}))
  redis.call('PEXPIRE', KEYS[3], redis.call('PTTL', KEYS[1]))
end
-- The same rule as `tail_len` in store/mod.rs.
local tail = tonumber(ARGV[8])
if type(cfg.context_window) == 'number' then tail = cfg.context_window end
local turns = {}
if tail > 0 then turns = redis.call('LRANGE', KEYS[4], -tail, -1) end
return {'admitted', meta, turns}
