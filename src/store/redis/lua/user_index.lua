-- Records a session in its user's index and keeps the index alive at least as long as
-- the session, so that the index expires by itself once every session has.
-- KEYS: user_index
-- ARGV: member (`<session id>:<incarnation>`), created_us (the score: creation time in
--       microseconds), ttl_ms, 'extend' (optional: only lengthen an index that exists,
--       adding nothing; a refresh that arrives after a delete must not bring a session or
--       the index back)
if ARGV[4] == 'extend' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
else
  redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
