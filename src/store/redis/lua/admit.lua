-- Decides whether a send may start, taking the lease and the idempotency key at once.
-- KEYS: meta, lease, idem
-- ARGV: lease_token, lease_ms, now_ms, idem_key ('' for none), fingerprint, idem_ttl_ms
-- Returns {'admitted', message_count} | {'missing'} | {'busy', pttl} | {'replay', response}
--       | {'in_use'} | {'reused'}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
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
return {'admitted', redis.call('HGET', KEYS[1], 'n')}
