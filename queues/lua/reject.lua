-- reject: the agent refuses an offer (RINGNOANSWER reason=reject); the interaction goes back to
-- its place. With exclusion on, that agent is not offered this interaction again.
-- KEYS: 1 ix, 2 bucket, 3 active_buckets, 4 agent, 5 avail, 6 offers, 7 due, 8 events, 9 agent_work
-- ARGV: 1 ix_id, 2 agent_id, 3 events_maxlen, 4 exclude agent (1|0)
local ix_id, agent_id = ARGV[1], ARGV[2]
local ix = hmget(KEYS[1], OFFER_FIELDS)
if ix.state ~= 'offered' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if ix.agent ~= agent_id then return fail('FORBIDDEN', 'offered to another agent') end
local declined = ix.declined or ''
if ARGV[4] == '1' then declined = declined .. ' ' .. agent_id end
local now = now_ms()
back_to_queue(ix_id, agent_id, ix, 'reject', ARGV[3], now, declined)
return {now}
