-- Settles a reservation with the actual use: gives back unused tokens (or takes the excess,
-- leaving a debt), and turns the reserved cost into spent cost.
-- KEYS: rate (hash), spend (hash of the day the reservation was made)
-- ARGV: tpm, reserved_tokens, used_tokens, budgeted ('1'/'0'), reserved_cost, used_cost, spend_ttl_ms
local limit = tonumber(ARGV[1])
local delta = tonumber(ARGV[2]) - tonumber(ARGV[3])
if limit > 0 and delta ~= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local bal = tonumber(redis.call('HGET', KEYS[1], 'tok'))
  if bal then
    local at = tonumber(redis.call('HGET', KEYS[1], 'tok_at'))
    bal = bal + math.max(0, now - at) * limit / 60000
  else
    bal = limit * 1000
  end
  bal = math.min(limit * 1000, bal + delta * 1000)
  redis.call('HSET', KEYS[1], 'tok', string.format('%.3f', bal), 'tok_at', string.format('%.0f', now))
  local full_in = math.ceil((limit * 1000 - bal) * 60 / limit) + 1000
  if full_in > redis.call('PTTL', KEYS[1]) then redis.call('PEXPIRE', KEYS[1], full_in) end
end
if ARGV[4] == '1' then
  if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[2], 'reserved', '-' .. ARGV[5]) end
  if ARGV[6] ~= '0' then redis.call('HINCRBY', KEYS[2], 'spent', ARGV[6]) end
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
return 1
