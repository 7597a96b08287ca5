-- An import's Idempotency-Key record: `R:<token>` while a request holds it (with a lease),
-- `D:<fingerprint>:<result>` once it finished.
-- KEYS: record   ARGV: op (claim | renew | finish | release), token, ms, fingerprint, result
-- claim returns {'claimed'}, {'in_flight'} or {'done', record}; the others 1, or 0 when the
-- token no longer holds the key (its lease lapsed and someone else may have it).
local v = redis.call('GET', KEYS[1])
if ARGV[1] == 'claim' then
  if not v then
    redis.call('SET', KEYS[1], 'R:' .. ARGV[2], 'PX', ARGV[3])
    return {'claimed'}
  end
  if string.sub(v, 1, 2) == 'R:' then return {'in_flight'} end
  return {'done', v}
end
if v ~= 'R:' .. ARGV[2] then return 0 end
if ARGV[1] == 'renew' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif ARGV[1] == 'finish' then
  redis.call('SET', KEYS[1], 'D:' .. ARGV[4] .. ':' .. ARGV[5], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
