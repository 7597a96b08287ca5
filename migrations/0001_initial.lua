-- Migration 1: the first key layout (see README.md beside this file).
-- There is no older data to convert; this only records that the layout is version 1.
-- KEYS: schema_version   ARGV: this migration's version
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = tonumber(ARGV[1])
if current >= target then return current end
redis.call('SET', KEYS[1], target)
return target
