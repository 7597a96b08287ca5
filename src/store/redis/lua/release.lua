-- Gives back a lease after a failed send and drops its in-flight idempotency mark.
-- KEYS: lease, idem   ARGV: lease_token, idem_key ('' for none)
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[2] ~= '' then
  local raw = redis.call('HGET', KEYS[2], ARGV[2])
  if raw then
    local rec = cjson.decode(raw)
    if rec.state == 'pending' and rec.lease == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
  end
end
return 1
