-- agent_login: an agent signs in (ADDMEMBER), ready or not ready, with the profile routing needs.
-- KEYS: 1 agent, 2 agents, 3 avail, 4 events
-- ARGV: 1 agent_id, 2 profile JSON (name, skills JSON, cap:<channel>, line, endpoint, blend_vt,
--       blend_tv), 3 state (ready|not_ready), 4 reason, 5 events_maxlen
local agent_id, state = ARGV[1], ARGV[3]
local cur = redis.call('HGET', KEYS[1], 'state')
if cur and cur ~= 'offline' then return fail('STATE', 'agent is already logged in') end
local now = now_ms()
hset_table(KEYS[1], cjson.decode(ARGV[2]))
redis.call('HSET', KEYS[1], 'id', agent_id, 'state', state, 'reason', ARGV[4], 'state_since', now,
  'idle_since', now, 'misses', 0, 'login_ms', now)
for _, ch in ipairs(CHANNELS) do
  if not redis.call('HGET', KEYS[1], 'load:' .. ch) then redis.call('HSET', KEYS[1], 'load:' .. ch, 0) end
end
redis.call('SADD', KEYS[2], agent_id)
refresh_avail(KEYS[1], KEYS[3], agent_id)
emit(KEYS[4], ARGV[5], {'ev', 'ADDMEMBER', 't', now, 'queue', '', 'ix', '', 'agent', agent_id,
  'channel', '', 'state', state, 'reason', ARGV[4]})
return {now}
