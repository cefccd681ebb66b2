-- agent_ready: a not-ready agent becomes ready (UNPAUSE); the ring-no-answer count restarts.
-- KEYS: 1 agent, 2 avail, 3 events
-- ARGV: 1 agent_id, 2 events_maxlen
local agent_id = ARGV[1]
local a = hmget(KEYS[1], {'state', 'state_since'})
if a.state == 'ready' then return fail('STATE', 'agent is already ready') end
if a.state ~= 'not_ready' then return fail('STATE', 'agent is ' .. tostring(a.state or 'unknown')) end
local now = now_ms()
-- idle time restarts: a pause is not idleness, so longest-idle does not favour a returning agent
redis.call('HSET', KEYS[1], 'state', 'ready', 'reason', '', 'state_since', now, 'misses', 0,
  'idle_since', now)
refresh_avail(KEYS[1], KEYS[2], agent_id)
emit(KEYS[3], ARGV[2], {'ev', 'UNPAUSE', 't', now, 'queue', '', 'ix', '', 'agent', agent_id,
  'channel', '', 'state_ms', now - num(a.state_since)})
return {now}
