-- Migration 4: session ids are per tenant.
--
-- Up to layout 3 a session's keys were `<prefix>:{<id>}:<part>`, so one id named one
-- session across all tenants. From layout 4 they are `<prefix>:{<scope>:<id>}:<part>`,
-- `scope` being 32 hex digits of a digest of the session's tenant (`src/domain/scope.rs`):
-- two tenants may hold the same id. User index entries (`<id>:<gen>`) are unchanged,
-- the index already being per tenant.
--
-- The old and the new keys of a session are in different slots, so no script may move
-- them. `src/store/migrate.rs` SCANs for `<prefix>:{*}:meta` whose tag has no `:`, reads
-- the tenant from the session's `cfg`, copies each key (`DUMP`, `RESTORE ... REPLACE`
-- with its remaining TTL) to the new tag, deletes the old keys, the `meta` hash last (so
-- a run that stopped half way is resumed by the next), and then runs THIS script, which
-- records the version. Stop instances of older builds before starting this one: they
-- keep writing the old layout until they stop. Client tokens issued before (without the
-- tenant's scope) are refused; clients ask for new ones.
-- KEYS: schema_version   ARGV: this migration's version
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = tonumber(ARGV[1])
if current >= target then return current end
redis.call('SET', KEYS[1], target)
return target
