-- Removes an API key and its prefixes, and bumps the key table's version.
-- KEYS: records, prefixes, version   ARGV: key_id
-- Returns 1 removed, 0 when there was no such key.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
for _, s in ipairs(cjson.decode(old).secrets) do redis.call('HDEL', KEYS[2], s.prefix) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
