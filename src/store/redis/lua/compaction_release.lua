-- Gives a compaction lease back if this token still holds it.
-- KEYS: meta   ARGV: token
if redis.call('HGET', KEYS[1], 'cl') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'cl', 'clx')
end
return 1
