-- complete: the conversation ends (COMPLETECALLER or COMPLETEAGENT, with talk time). With wrap-up
-- time the agent keeps the slot until wrap-up ends; without, the interaction closes now.
-- KEYS: 1 ix, 2 agent, 3 wrapups, 4 avail, 5 events, 6 agent_work
-- ARGV: 1 ix_id, 2 agent_id (holder), 3 side (caller|agent), 4 wrap-up ms, 5 events_maxlen,
--       6 the channel's time of hang-up (ms, 0 = now), 7 disposition, 8 note (both optional:
--       the outcome the agent already chose; kept for wrap-up, or final when there is none)
-- Returns {now, talk_ms, state}.
local ix_id, agent_id, side = ARGV[1], ARGV[2], ARGV[3]
if side ~= 'caller' and side ~= 'agent' then return fail('STATE', 'side must be caller or agent') end
local ix = hmget(KEYS[1], {'state', 'agent', 'queue', 'channel', 'entered_ms', 'connected_ms'})
if ix.state ~= 'connected' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if ix.agent ~= agent_id then return fail('FORBIDDEN', 'interaction is with another agent') end
local now = channel_time(ARGV[6], ix.connected_ms, now_ms())
local talk = now - num(ix.connected_ms)
local wrapup = num(ARGV[4])
local ev = side == 'caller' and 'COMPLETECALLER' or 'COMPLETEAGENT'
local disposition, note = ARGV[7] or '', ARGV[8] or ''
local fields = {'ev', ev, 't', now, 'queue', ix.queue, 'ix', ix_id, 'agent', agent_id,
  'channel', ix.channel, 'wait_ms', num(ix.connected_ms) - num(ix.entered_ms), 'talk_ms', talk}
if wrapup <= 0 and (disposition ~= '' or note ~= '') then
  for _, v in ipairs({'disposition', disposition, 'note', note}) do fields[#fields + 1] = v end
end
emit(KEYS[5], ARGV[5], fields)
if disposition ~= '' or note ~= '' then
  redis.call('HSET', KEYS[1], 'disposition', disposition, 'note', note)
end
if wrapup > 0 then
  redis.call('HSET', KEYS[1], 'state', 'wrapup', 'talk_end_ms', now, 'wrapup_until', now + wrapup,
    'ended_by', side)
  redis.call('ZADD', KEYS[3], now + wrapup, ix_id)
  return {now, talk, 'wrapup'}
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'talk_end_ms', now, 'ended_ms', now,
  'ended_by', side)
release_slot(KEYS[2], KEYS[4], KEYS[6], agent_id, ix_id, ix.channel, now)
return {now, talk, 'closed'}
