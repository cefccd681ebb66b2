-- agent_logout: the agent signs out (REMOVEMEMBER). Refused while the agent still holds work, so
-- no interaction is stranded with an absent agent.
-- KEYS: 1 agent, 2 avail, 3 events, 4 agent_work
-- ARGV: 1 agent_id, 2 events_maxlen
local agent_id = ARGV[1]
local a = hmget(KEYS[1], {'state', 'state_since'})
if not a.state or a.state == 'offline' then return fail('STATE', 'agent is not logged in') end
if redis.call('SCARD', KEYS[4]) > 0 then return fail('BUSY', 'agent still holds interactions') end
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'offline', 'reason', '', 'state_since', now)
redis.call('ZREM', KEYS[2], agent_id)
emit(KEYS[3], ARGV[2], {'ev', 'REMOVEMEMBER', 't', now, 'queue', '', 'ix', '', 'agent', agent_id,
  'channel', '', 'state_ms', now - num(a.state_since)})
return {now}
