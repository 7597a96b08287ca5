-- Adds one answered request to a tenant's usage of one day.
-- KEYS: usage_day (hash)   ARGV: field_prefix ("<key_id>\31<model>\31"), prompt, completion, cost_nano, ttl_ms
redis.call('HINCRBY', KEYS[1], ARGV[1] .. 'n', 1)
redis.call('HINCRBY', KEYS[1], ARGV[1] .. 'pt', ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[1] .. 'ct', ARGV[3])
redis.call('HINCRBY', KEYS[1], ARGV[1] .. 'cost', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
