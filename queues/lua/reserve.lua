-- reserve: offer a waiting interaction to an agent (OFFER). The dispatcher picked the pair from
-- data that may already be stale; this script re-checks everything and refuses a stale pick, so
-- two dispatchers can never offer one interaction twice or fill an agent over capacity.
-- KEYS: 1 ix, 2 bucket, 3 active_buckets, 4 agent, 5 avail, 6 offers, 7 due, 8 events, 9 agent_work
-- ARGV: 1 ix_id, 2 agent_id, 3 bucket_id, 4 offer timeout ms, 5 events_maxlen
-- Returns {offered_ms, deadline_ms}.
local ix_id, agent_id, bucket_id = ARGV[1], ARGV[2], ARGV[3]
local ix = hmget(KEYS[1], {'state', 'bucket', 'channel', 'skills', 'target_agent', 'declined',
  'queue', 'entered_ms', 'attempts'})
if ix.state ~= 'queued' then return fail('STALE', 'interaction is ' .. tostring(ix.state)) end
if ix.bucket ~= bucket_id then return fail('STALE', 'interaction moved to another bucket') end
local a = agent_snapshot(KEYS[4])
if not can_take(a, ix.channel) then return fail('STALE', 'agent cannot take ' .. ix.channel) end
if not skills_ok(a.skills, ix.skills) then return fail('STALE', 'agent lacks a required skill') end
if ix.target_agent and ix.target_agent ~= '' and ix.target_agent ~= agent_id then
  return fail('STALE', 'interaction is for another agent')
end
if word_in(ix.declined, agent_id) then return fail('STALE', 'agent declined it before') end

local now = now_ms()
local deadline = now + num(ARGV[4])
take_from_bucket(KEYS[2], KEYS[3], bucket_id, KEYS[7], ix_id)
redis.call('HSET', KEYS[1], 'state', 'offered', 'agent', agent_id, 'offered_ms', now,
  'offer_deadline', deadline)
redis.call('HINCRBY', KEYS[4], 'load:' .. ix.channel, 1)
-- an agent who was just given work is no longer idle: longest-idle turns to the others next
redis.call('HSET', KEYS[4], 'last_offer_ms', now, 'idle_since', now)
redis.call('SADD', KEYS[9], ix_id)
refresh_avail(KEYS[4], KEYS[5], agent_id)
redis.call('ZADD', KEYS[6], deadline, ix_id)
emit(KEYS[8], ARGV[5], {'ev', 'OFFER', 't', now, 'queue', ix.queue, 'ix', ix_id, 'agent', agent_id,
  'channel', ix.channel, 'wait_ms', now - num(ix.entered_ms), 'attempt', num(ix.attempts) + 1})
return {now, deadline}
