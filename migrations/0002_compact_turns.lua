-- Migration 2: turns in the compact stored form.
--
-- The first layout stored each turn as {"id","role","content","created_at","tokens"}
-- with an RFC 3339 time; the second as {"i","r","c","t","n"} (and, for tool calls and the
-- like, "nm","tc","ti","rf") with the time in nanoseconds: about a tenth fewer bytes per
-- plain turn. Both read the same, so the migration only saves memory and may run while
-- the service serves.
--
-- The lists are in many slots (each session's keys share the session's hash tag), so no
-- single script may touch them all. `src/store/migrate.rs` SCANs for `<prefix>:{*}:turns`,
-- reads each list in chunks, re-encodes the turns, and runs THIS script once per chunk;
-- when the scan is done it sets the schema version.
--
-- KEYS: one turns list   ARGV: start index, then (old turn, new turn) pairs
-- Each turn is replaced only if it is still the one that was read: a list rewritten or
-- deleted meanwhile (an import replacing a session, a logout) is left as it now is.
-- Returns how many turns were replaced.
local start = tonumber(ARGV[1])
local replaced = 0
for i = 2, #ARGV, 2 do
  local index = start + (i - 2) / 2
  if redis.call('LINDEX', KEYS[1], index) == ARGV[i] then
    redis.call('LSET', KEYS[1], index, ARGV[i + 1])
    replaced = replaced + 1
  end
end
return replaced
