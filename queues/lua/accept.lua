-- accept: the agent takes the offered interaction (CONNECT, with the exact wait).
-- KEYS: 1 ix, 2 agent, 3 offers, 4 events
-- ARGV: 1 ix_id, 2 agent_id, 3 events_maxlen, 4 the channel's time of answer (ms, 0 = now)
-- Returns {connected_ms, wait_ms}.
local ix_id, agent_id = ARGV[1], ARGV[2]
local ix = hmget(KEYS[1], {'state', 'agent', 'queue', 'channel', 'entered_ms', 'first_entered_ms',
  'offered_ms', 'promised_at_ms', 'promised_wait_ms'})
if ix.state ~= 'offered' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if ix.agent ~= agent_id then return fail('FORBIDDEN', 'offered to another agent') end
local now = channel_time(ARGV[4], ix.offered_ms, now_ms())
local wait = now - num(ix.entered_ms)
redis.call('HSET', KEYS[1], 'state', 'connected', 'connected_ms', now)
redis.call('ZREM', KEYS[3], ix_id)
redis.call('HSET', KEYS[2], 'misses', 0)
local fields = {'ev', 'CONNECT', 't', now, 'queue', ix.queue, 'ix', ix_id,
  'agent', agent_id, 'channel', ix.channel, 'wait_ms', wait,
  'total_wait_ms', now - num(ix.first_entered_ms), 'ring_ms', now - num(ix.offered_ms)}
if ix.promised_at_ms then
  -- the resident was told a wait (announce.lua): what it became, so the promise is measured
  fields[#fields + 1] = 'promised_wait_ms'
  fields[#fields + 1] = num(ix.promised_wait_ms)
  fields[#fields + 1] = 'waited_after_promise_ms'
  fields[#fields + 1] = now - num(ix.promised_at_ms)
end
emit(KEYS[4], ARGV[3], fields)
return {now, wait}
