-- Stores the turns of a successful send, only if the session still exists and this
-- request still holds its lease (a fencing check), then releases the lease.
-- KEYS: meta, turns, lease, idem, ctok
-- ARGV: fence_ms (Redis' clock: past it the service has answered 503 and stopped waiting),
--       lease_token, expected_len, now_ms, prompt_tokens, completion_tokens, cost_nano,
--       idem_key ('' for none), idem_record, turn_json...
-- Returns 0 missing, -1 lease lost, -2 too late (nothing stored, lease released), {ttl_ms, user_index_key} committed; the
-- index key only if the index must be lengthened to outlive the session (see `uidx_until`).
local t = redis.call('TIME')
-- A commit run after the service gave up must not store turns its client was told were
-- not stored: a retry would store them twice. It gives the lease back, as the failed
-- send does (whose own release may be stuck behind the same stall).
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
  return -2
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return -1 end
local first_turn = 10
if #ARGV >= first_turn then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, first_turn))
end
redis.call('HINCRBY', KEYS[1], 'n', #ARGV - first_turn + 1)
redis.call('HINCRBY', KEYS[1], 'pt', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'ct', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'cost', ARGV[7])
redis.call('HSET', KEYS[1], 'last', ARGV[4])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[4], ARGV[8], ARGV[9]) end
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
if covered >= tonumber(ARGV[4]) + tonumber(ttl) then uidx = '' end
return {ttl, uidx}
