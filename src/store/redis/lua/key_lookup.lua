-- Finds an API key record by the public prefix of one of its secrets, in one round trip.
-- KEYS: records, prefixes   ARGV: prefix
-- Returns the record's JSON, or nil.
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[1], id)
