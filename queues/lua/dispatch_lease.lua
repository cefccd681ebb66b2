-- dispatch_lease: take or renew the short lease that lets one dispatcher plan rounds while
-- others stand by. Purely an economy: correctness never depends on it (reserve re-checks every
-- pick), but two dispatchers planning the same round waste a third of their picks. A holder
-- that stops renewing (dead, or idle) loses it after `ttl_ms`, and any other takes over.
-- KEYS: 1 lease
-- ARGV: 1 dispatcher name, 2 ttl ms
-- Returns 1 when the caller holds the lease now, else 0. Writes no event: not a state change.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
