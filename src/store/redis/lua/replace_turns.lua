-- Replaces turns in place, each only if it is still the one that was read, all or none:
-- a conversation item deleted, or a response marked deleted. Appends meanwhile do not
-- conflict (positions never move); a list rewritten or deleted does.
-- KEYS: turns   ARGV: (index, old turn, new turn) triples
-- Returns 1 replaced, 0 changed meanwhile.
for i = 1, #ARGV, 3 do
  if redis.call('LINDEX', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
for i = 1, #ARGV, 3 do
  redis.call('LSET', KEYS[1], ARGV[i], ARGV[i + 2])
end
return 1
