-- Stores the turns of a successful send, only if the session still exists and this
-- request still holds its lease (a fencing check), then releases the lease.
-- KEYS: meta, turns, lease, idem, ctok
-- ARGV: lease_token, expected_len, now_ms, prompt_tokens, completion_tokens, cost_nano,
--       idem_key ('' for none), idem_record, turn_json...
-- Returns 0 missing, -1 lease lost, {ttl_ms, user_index_key} committed; the index key only
-- if the index must be lengthened to outlive the session (see `uidx_until`).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[2]) then return -1 end
local first_turn = 9
if #ARGV >= first_turn then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, first_turn))
end
redis.call('HINCRBY', KEYS[1], 'n', #ARGV - first_turn + 1)
redis.call('HINCRBY', KEYS[1], 'pt', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'ct', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'cost', ARGV[6])
redis.call('HSET', KEYS[1], 'last', ARGV[3])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[4], ARGV[7], ARGV[8]) end
local ttl = redis.call('HGET', KEYS[1], 'ttl')
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
redis.call('DEL', KEYS[3])
-- The user index is another key (on another node in a cluster): the caller lengthens it
-- after this script, and records up to when it did in 'uidx_until' (ms). Until then,
-- sends need not touch it.
local uidx = redis.call('HGET', KEYS[1], 'uidx')
local covered = tonumber(redis.call('HGET', KEYS[1], 'uidx_until') or '0')
if covered >= tonumber(ARGV[3]) + tonumber(ttl) then uidx = '' end
return {ttl, uidx}
