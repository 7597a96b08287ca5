-- Compare-and-set of a session's configuration; refreshes the TTL of every key.
-- KEYS: meta, turns, idem, ctok   ARGV: cfg_json, expected_rev, ttl_ms, now_ms
-- Returns -1 missing, 0 conflict, {ttl_ms, user_index_key, incarnation} written.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'rev') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'cfg', ARGV[1], 'ttl', ARGV[3], 'last', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'rev', 1)
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return {ARGV[3], redis.call('HGET', KEYS[1], 'uidx'), redis.call('HGET', KEYS[1], 'gen') or ''}
