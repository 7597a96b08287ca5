-- Records that the session's user index lives at least until ARGV[1] (ms), so that sends
-- until then need not lengthen it. Never brings a deleted session back, never lowers
-- the mark (an older lengthening may finish after a newer one).
-- KEYS: meta   ARGV: until_ms
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local mark = tonumber(redis.call('HGET', KEYS[1], 'uidx_until') or '0')
if mark < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'uidx_until', ARGV[1]) end
return 1
