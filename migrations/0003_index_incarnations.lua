-- Migration 3: user index entries name one incarnation of a session.
-- Sessions now carry `gen` (their incarnation) and user index entries are
-- `<session id>:<gen>`, so that an id made again (after it expired, by an import) is a
-- new entry that no check or removal of the old one can confuse with it. Entries and
-- sessions of older layouts (a bare id, no `gen`) stay valid as they are: a bare id
-- matches a session without `gen`. Nothing is rewritten; this records that a build
-- knowing only layout 2 or older (which would take `<id>:<gen>` for the id of a session
-- that does not exist, and prune it) must no longer start against this Redis.
-- KEYS: schema_version   ARGV: this migration's version
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = tonumber(ARGV[1])
if current >= target then return current end
redis.call('SET', KEYS[1], target)
return target
