-- Creates a session's metadata hash unless the id is taken.
-- KEYS: meta   ARGV: cfg_json, ttl_ms, now_ms, user_index_key, incarnation
-- The incarnation tells this session from any other that had or will have the same id:
-- its user index entry is `<id>:<incarnation>` (see sessions.rs).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'cfg', ARGV[1], 'rev', 1, 'ttl', ARGV[2], 'last', ARGV[3],
  'n', 0, 'pt', 0, 'ct', 0, 'cost', 0, 'uidx', ARGV[4], 'gen', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
