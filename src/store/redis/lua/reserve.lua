-- Takes a reservation from a key's rate buckets and daily budget: all of it or nothing.
-- Buckets hold thousandths and refill continuously by Redis' own clock, so every
-- instance shares one limit whatever its own clock says.
-- KEYS: rate (hash), spend (hash of the day)
-- ARGV: rpm, requests, tpm, tokens, budget_nano ('' = none), cost_nano, spend_ttl_ms
-- Returns {'ok'} | {'rate', retry_after_ms} | {'budget', spent_nano}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- The level of a bucket of `limit` per minute: limit/60000 thousandths per microsecond.
local function level(name, limit)
  local bal = tonumber(redis.call('HGET', KEYS[1], name))
  if not bal then return limit * 1000 end
  local at = tonumber(redis.call('HGET', KEYS[1], name .. '_at'))
  return math.min(limit * 1000, bal + math.max(0, now - at) * limit / 60000)
end

-- The budget first: a 429 must not promise a success that the budget would refuse.
if ARGV[5] ~= '' then
  local spent = tonumber(redis.call('HGET', KEYS[2], 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[2], 'reserved') or '0')
  if spent + reserved + tonumber(ARGV[6]) > tonumber(ARGV[5]) then return {'budget', spent} end
end

local wait, take = 0, {}
for _, b in ipairs({{'req', tonumber(ARGV[1]), tonumber(ARGV[2])}, {'tok', tonumber(ARGV[3]), tonumber(ARGV[4])}}) do
  local name, limit, amount = b[1], b[2], b[3]
  if limit > 0 and amount > 0 then
    local bal = level(name, limit)
    -- More than a whole bucket passes once the bucket is full, leaving a debt.
    local need = math.min(amount, limit) * 1000
    if bal < need then
      wait = math.max(wait, math.ceil((need - bal) * 60 / limit))
    else
      take[#take + 1] = {name, limit, bal - amount * 1000}
    end
  end
end
if wait > 0 then return {'rate', wait} end

for _, b in ipairs(take) do
  redis.call('HSET', KEYS[1], b[1], string.format('%.3f', b[3]), b[1] .. '_at', string.format('%.0f', now))
  -- A bucket that has refilled completely is the same as no bucket: let it expire then.
  local full_in = math.ceil((b[2] * 1000 - b[3]) * 60 / b[2]) + 1000
  if full_in > redis.call('PTTL', KEYS[1]) then redis.call('PEXPIRE', KEYS[1], full_in) end
end
if ARGV[5] ~= '' and tonumber(ARGV[6]) > 0 then
  redis.call('HINCRBY', KEYS[2], 'reserved', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
return {'ok'}
