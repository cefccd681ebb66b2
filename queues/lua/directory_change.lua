-- directory_change: an admin sets or removes an agent or a queue (router.directory). The caller
-- validated the whole effective configuration at `expected version`; a change made meanwhile by
-- someone else refuses this one (STALE) so two admins can never combine into an invalid state.
-- Removing an agent is refused while the agent is signed in or holds work, and deletes the
-- agent's routing state with it. `reset` drops the overlay entry (change or removal) so the
-- file's definition applies again; for a name the file lacks it is a removal. Appends CONFIG to
-- the event stream.
-- KEYS: 1 overlay hash, 2 removed set, 3 version, 4 events, 5 agent, 6 agent_work, 7 agents,
--       8 avail
-- ARGV: 1 expected version, 2 kind (agent|queue), 3 action (set|remove|reset), 4 name,
--       5 JSON (set), 6 in_base ("1" when the file defines the name), 7 by, 8 events_maxlen
local kind, action, name = ARGV[2], ARGV[3], ARGV[4]
local version = num(redis.call('GET', KEYS[3]))
if version ~= num(ARGV[1]) then
  return fail('STALE', 'the directory changed meanwhile (now version ' .. version .. ')')
end
local removing = action == 'remove' or (action == 'reset' and ARGV[6] ~= '1')
if kind == 'agent' and removing then
  local state = redis.call('HGET', KEYS[5], 'state')
  if state and state ~= 'offline' then
    return fail('BUSY', 'the agent is signed in: sign them out first')
  end
  if redis.call('SCARD', KEYS[6]) > 0 then
    return fail('BUSY', 'the agent still holds interactions')
  end
end
if action == 'set' then
  redis.call('HSET', KEYS[1], name, ARGV[5])
  redis.call('SREM', KEYS[2], name)
elseif not removing then  -- reset to the file's definition
  redis.call('HDEL', KEYS[1], name)
  redis.call('SREM', KEYS[2], name)
else
  redis.call('HDEL', KEYS[1], name)
  if action == 'remove' and ARGV[6] == '1' then redis.call('SADD', KEYS[2], name) end
  if kind == 'agent' then
    redis.call('DEL', KEYS[5])
    redis.call('SREM', KEYS[7], name)
    redis.call('ZREM', KEYS[8], name)
  end
end
local now = now_ms()
local v = redis.call('INCR', KEYS[3])
local queue, agent = '', ''
if kind == 'queue' then queue = name else agent = name end
emit(KEYS[4], ARGV[8], {'ev', 'CONFIG', 't', now, 'queue', queue, 'ix', '', 'agent', agent,
  'channel', '', 'kind', kind, 'action', action, 'name', name, 'version', v, 'by', ARGV[7]})
return v
