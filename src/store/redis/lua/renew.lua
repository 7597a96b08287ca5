-- Lengthens a send's lease while that send still holds it.
-- KEYS: lease   ARGV: lease_token, lease_ms
-- Returns 1 renewed, 0 when the token no longer holds the lease (it lapsed, or was given
-- back, or another send has it).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
