-- agent_profile: change an agent's skills, capacity or blending without a restart. Not an event
-- of the queue_log vocabulary, but still one script so availability follows at once.
-- KEYS: 1 agent, 2 agents, 3 avail
-- ARGV: 1 agent_id, 2 profile JSON
local agent_id = ARGV[1]
hset_table(KEYS[1], cjson.decode(ARGV[2]))
if not redis.call('HGET', KEYS[1], 'state') then
  redis.call('HSET', KEYS[1], 'id', agent_id, 'state', 'offline')
end
redis.call('SADD', KEYS[2], agent_id)
refresh_avail(KEYS[1], KEYS[3], agent_id)
return {1}
