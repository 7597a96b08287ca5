-- Stores a folded summary only on top of the generation the job read, while its lease
-- holds and the watermark is within the history; renews the lease for the next chunk.
-- Sends append after the folded range and touch neither field: they never conflict.
-- KEYS: meta   ARGV: token, expected_gen, summary_json, upto, pt, ct, cost, lease_ms
-- Returns 1 committed, 0 missing, -1 stale (generation moved or lease lost).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HGET', KEYS[1], 'cl') ~= ARGV[1] then return -1 end
if tonumber(redis.call('HGET', KEYS[1], 'clx') or '0') <= now then return -1 end
if tonumber(redis.call('HGET', KEYS[1], 'sgen') or '0') ~= tonumber(ARGV[2]) then return -1 end
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[1], 'n') or '0') then return -1 end
redis.call('HSET', KEYS[1], 'sum', ARGV[3], 'clx', now + tonumber(ARGV[8]))
redis.call('HINCRBY', KEYS[1], 'sgen', 1)
redis.call('HINCRBY', KEYS[1], 'pt', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'ct', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'cost', ARGV[7])
return 1
