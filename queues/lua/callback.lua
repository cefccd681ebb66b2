-- callback: a waiting caller asks to be called back instead of holding on. The interaction keeps
-- its place in the queue; when it is offered, the voice channel calls the agent first and then
-- the resident's number. Not a queue_log transition (the contact still waits): no event.
-- KEYS: 1 ix
-- ARGV: 1 number to call back (E.164)
-- Returns 1 when recorded, 0 when the interaction no longer waits.
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'callback', 1, 'callback_number', ARGV[1], 'callback_at_ms', now_ms())
return 1
