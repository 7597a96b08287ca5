-- Writes one imported session, all or nothing.
-- KEYS: meta, turns, lease, idem, ctok
-- ARGV: mode (create | append | replace), cfg_json, ttl_ms, now_ms, user_index_key,
--       expected_cfg, expected_len, incarnation (create, replace: a new one),
--       summary_json (create, replace: '' for none), turn_json...
-- Returns {1, old_user_index_key, old_incarnation, ttl_ms, user_index_key, incarnation}
-- written, or {status}:
--   0 the id is taken (create), -1 missing, -2 a send holds the lease, -3 changed since read.
local mode, first = ARGV[1], 10
local count = #ARGV - first + 1
if mode == 'create' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
  -- Keys left by a session that just expired must not leak into the new one.
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
else
  if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
  -- The stored settings name the tenant: unchanged means ours, and not re-created meanwhile.
  if redis.call('HGET', KEYS[1], 'cfg') ~= ARGV[6] then return {-3} end
  if redis.call('EXISTS', KEYS[3]) == 1 then return {-2} end
  if mode == 'append' and redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[7]) then return {-3} end
end
local old_uidx = redis.call('HGET', KEYS[1], 'uidx') or ''
local old_gen = redis.call('HGET', KEYS[1], 'gen') or ''
if mode == 'append' then
  redis.call('HINCRBY', KEYS[1], 'n', count)
  redis.call('HSET', KEYS[1], 'last', ARGV[4])
else
  local rev = 1
  if mode == 'replace' then
    -- The revision keeps counting, so a PATCH that read the old settings cannot land.
    rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0') + 1
    -- Old replies to replay and old client tokens belong to the old conversation.
    redis.call('DEL', KEYS[2], KEYS[4], KEYS[5])
    -- It may now belong to another user: how long the old index lives says nothing.
    redis.call('HDEL', KEYS[1], 'uidx_until')
    -- A replaced history voids the summary; the generation keeps counting so that a
    -- compaction that read the old one commits nothing.
    redis.call('HDEL', KEYS[1], 'sum')
    redis.call('HINCRBY', KEYS[1], 'sgen', 1)
  end
  redis.call('HSET', KEYS[1], 'cfg', ARGV[2], 'rev', rev, 'ttl', ARGV[3], 'last', ARGV[4],
    'n', count, 'pt', 0, 'ct', 0, 'cost', 0, 'uidx', ARGV[5], 'gen', ARGV[8])
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'sum', ARGV[9]) end
end
-- unpack() is bounded by Lua's stack: push in slices.
for i = first, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local ttl = redis.call('HGET', KEYS[1], 'ttl')
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
return {1, old_uidx, old_gen, ttl, redis.call('HGET', KEYS[1], 'uidx'),
  redis.call('HGET', KEYS[1], 'gen') or ''}
