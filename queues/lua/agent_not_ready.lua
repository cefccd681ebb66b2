-- agent_not_ready: the agent pauses with a reason code (PAUSE). Work already held continues;
-- nothing new is offered. Changing the reason while paused writes a new PAUSE.
-- KEYS: 1 agent, 2 avail, 3 events
-- ARGV: 1 agent_id, 2 reason, 3 events_maxlen
local agent_id = ARGV[1]
local a = hmget(KEYS[1], {'state', 'state_since'})
if a.state ~= 'ready' and a.state ~= 'not_ready' then
  return fail('STATE', 'agent is ' .. tostring(a.state or 'unknown'))
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'not_ready', 'reason', ARGV[2], 'state_since', now)
redis.call('ZREM', KEYS[2], agent_id)
emit(KEYS[3], ARGV[3], {'ev', 'PAUSE', 't', now, 'queue', '', 'ix', '', 'agent', agent_id,
  'channel', '', 'reason', ARGV[2], 'state_ms', now - num(a.state_since)})
return {now}
