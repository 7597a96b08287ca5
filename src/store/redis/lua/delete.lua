-- Removes every key of a session; with an expected owner, only if the session is that
-- incarnation of that user index's owner (a logout reaching it through the index: the id
-- may have expired and been made again for someone else).
-- KEYS: meta, turns, lease, idem, ctok
-- ARGV: (optional) user_index_key, incarnation ('' for a session made before incarnations)
-- Returns {user_index_key, incarnation} of the deleted session, or 0 when nothing was deleted.
local owner = redis.call('HMGET', KEYS[1], 'uidx', 'gen')
if not owner[1] then return 0 end
if #ARGV > 0 and (owner[1] ~= ARGV[1] or (owner[2] or '') ~= ARGV[2]) then return 0 end
redis.call('DEL', unpack(KEYS))
return {owner[1], owner[2] or ''}
