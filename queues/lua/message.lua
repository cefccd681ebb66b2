-- message: one message of the conversation, from the resident or from the agent holding it
-- (MESSAGE). A resident may write while waiting; an agent only while connected.
-- KEYS: 1 ix, 2 messages, 3 events
-- ARGV: 1 ix_id, 2 from (resident|agent), 3 agent_id, 4 message JSON, 5 events_maxlen
-- Returns {now, index of the message}.
local ix_id, from = ARGV[1], ARGV[2]
local ix = hmget(KEYS[1], {'state', 'agent', 'queue', 'channel'})
if not ix.state then return fail('NOTFOUND', 'no such interaction') end
if from == 'agent' then
  if ix.state ~= 'connected' then return fail('STATE', 'interaction is ' .. ix.state) end
  if ix.agent ~= ARGV[3] then return fail('FORBIDDEN', 'interaction is with another agent') end
elseif ix.state == 'closed' or ix.state == 'abandoned' or ix.state == 'timeout'
    or ix.state == 'deflected' then
  return fail('STATE', 'interaction is ' .. ix.state)
end
local now = now_ms()
local m = cjson.decode(ARGV[4])
m.t = now
m.from = from
m.agent = ARGV[3]
local n = redis.call('RPUSH', KEYS[2], cjson.encode(m))
emit(KEYS[3], ARGV[5], {'ev', 'MESSAGE', 't', now, 'queue', ix.queue, 'ix', ix_id,
  'agent', ARGV[3], 'channel', ix.channel, 'from', from, 'size', #(m.text or ''), 'index', n})
return {now, n}
