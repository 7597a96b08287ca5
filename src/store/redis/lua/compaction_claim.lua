-- Takes a session's compaction lease unless a live one is held, and reads the session.
-- KEYS: meta   ARGV: token, lease_ms
-- Returns {'claimed', meta_fields} | {'busy'} | {'missing'}. The lease lives in the meta
-- hash ('cl' holder, 'clx' until, ms of Redis' clock), so it goes with the session.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('HGET', KEYS[1], 'cl')
if holder and tonumber(redis.call('HGET', KEYS[1], 'clx') or '0') > now then
  return {'busy'}
end
redis.call('HSET', KEYS[1], 'cl', ARGV[1], 'clx', now + tonumber(ARGV[2]))
return {'claimed', redis.call('HGETALL', KEYS[1])}
