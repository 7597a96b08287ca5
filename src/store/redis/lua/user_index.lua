-- Records a session in its user's index and keeps the index alive at least as long as
-- the session, so that the index expires by itself once every session has.
-- KEYS: user_index   ARGV: session_id, created_us (the score: creation time in microseconds), ttl_ms
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
