-- Refreshes the sliding TTL of every key of a session to the session's own ttl.
-- KEYS: meta, turns, idem, ctok   ARGV: now_ms
-- Returns {ttl_ms, user_index_key, incarnation}, or 0 when the session does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ttl = redis.call('HGET', KEYS[1], 'ttl')
redis.call('HSET', KEYS[1], 'last', ARGV[1])
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
return {ttl, redis.call('HGET', KEYS[1], 'uidx'), redis.call('HGET', KEYS[1], 'gen') or ''}
