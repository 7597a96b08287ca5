-- Replaces ('' clears) a session's summary whatever its generation, bumping the
-- generation so that a compaction in flight commits nothing.
-- KEYS: meta   ARGV: summary_json
-- Returns -1 missing, else the new generation.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'sum')
else
  redis.call('HSET', KEYS[1], 'sum', ARGV[1])
end
return redis.call('HINCRBY', KEYS[1], 'sgen', 1)
