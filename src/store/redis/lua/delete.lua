-- Removes every key of a session.
-- KEYS: meta, turns, lease, idem, ctok
-- Returns the user index key (possibly empty), or 0 when the session did not exist.
local uidx = redis.call('HGET', KEYS[1], 'uidx')
redis.call('DEL', unpack(KEYS))
if not uidx then return 0 end
return uidx
