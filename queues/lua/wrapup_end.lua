-- wrapup_end: the agent finishes after-contact work (WRAPUPEND), by the agent or by the timer,
-- with an optional disposition code and note. The slot is freed and the interaction closed.
-- KEYS: 1 ix, 2 agent, 3 wrapups, 4 avail, 5 events, 6 agent_work
-- ARGV: 1 ix_id, 2 agent_id, 3 by (agent|timer), 4 disposition, 5 note, 6 events_maxlen
-- An empty disposition or note keeps the one given when the conversation ended (complete).
local ix_id, agent_id, by = ARGV[1], ARGV[2], ARGV[3]
local ix = hmget(KEYS[1], {'state', 'agent', 'queue', 'channel', 'talk_end_ms', 'wrapup_until',
  'disposition', 'note'})
if ix.state ~= 'wrapup' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if ix.agent ~= agent_id then return fail('FORBIDDEN', 'interaction is with another agent') end
local now = now_ms()
if by == 'timer' and now < num(ix.wrapup_until) then return fail('EARLY', 'wrap-up not over') end
local disposition = ARGV[4] ~= '' and ARGV[4] or (ix.disposition or '')
local note = ARGV[5] ~= '' and ARGV[5] or (ix.note or '')
redis.call('HSET', KEYS[1], 'state', 'closed', 'ended_ms', now, 'disposition', disposition,
  'note', note)
redis.call('ZREM', KEYS[3], ix_id)
release_slot(KEYS[2], KEYS[4], KEYS[6], agent_id, ix_id, ix.channel, now)
emit(KEYS[5], ARGV[6], {'ev', 'WRAPUPEND', 't', now, 'queue', ix.queue, 'ix', ix_id,
  'agent', agent_id, 'channel', ix.channel, 'wrapup_ms', now - num(ix.talk_end_ms), 'by', by,
  'disposition', disposition, 'note', note})
return {now}
