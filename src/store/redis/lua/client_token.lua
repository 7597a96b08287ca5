-- Stores a client token beside its session, under the session's hash tag, so that deleting
-- the session deletes its tokens and the tokens' key never outlives the session.
-- KEYS: meta, ctok   ARGV: digest, record_json, now_ms
-- Returns 1 stored, 0 when the session does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if cjson.decode(all[i + 1]).expires_at_ms <= now then redis.call('HDEL', KEYS[2], all[i]) end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
