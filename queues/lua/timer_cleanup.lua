-- timer_cleanup: drop a timer entry whose interaction is no longer in the state the timer is for
-- (e.g. left over by an interrupted operation), so the timer loop does not fire it forever.
-- Compare-and-delete: a timer re-armed meanwhile (state back to the expected one) is kept.
-- KEYS: 1 ix, 2 timer zset
-- ARGV: 1 ix_id, 2 state the timer belongs to
if redis.call('HGET', KEYS[1], 'state') == ARGV[2] then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
