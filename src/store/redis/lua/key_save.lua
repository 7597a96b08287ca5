-- Writes an API key record and its prefix index if the stored revision is as expected,
-- and bumps the key table's version so that every instance's cache forgets.
-- KEYS: records, prefixes, version
-- ARGV: key_id, record_json, expected_revision ('' = must not exist yet), prefix...
-- Returns 1 written, 0 conflict, -1 missing.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '' then
  if old then return 0 end
else
  if not old then return -1 end
  local rec = cjson.decode(old)
  if tostring(rec.revision) ~= ARGV[3] then return 0 end
  for _, s in ipairs(rec.secrets) do redis.call('HDEL', KEYS[2], s.prefix) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 4, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
redis.call('INCR', KEYS[3])
return 1
