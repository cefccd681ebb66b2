-- announce: remember what a waiting resident was promised (position, estimated wait), so the
-- promise can be measured against the wait they actually had. The first announcement is kept
-- (that is the promise); the latest one too. Not a state change: no event.
-- KEYS: 1 ix
-- ARGV: 1 position, 2 estimated wait ms
-- Returns 1 when recorded, 0 when the interaction no longer waits.
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
local now = now_ms()
redis.call('HSETNX', KEYS[1], 'promised_at_ms', now)
redis.call('HSETNX', KEYS[1], 'promised_wait_ms', ARGV[2])
redis.call('HSETNX', KEYS[1], 'promised_pos', ARGV[1])
redis.call('HSET', KEYS[1], 'announced_at_ms', now, 'announced_wait_ms', ARGV[2],
  'announced_pos', ARGV[1], 'announcements', num(redis.call('HGET', KEYS[1], 'announcements')) + 1)
return 1
