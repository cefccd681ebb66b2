-- offer_timeout: nobody answered the offer in time (RINGNOANSWER reason=timeout). The
-- interaction returns to its place; after `max_misses` timeouts in a row the agent is paused
-- (PAUSE with the configured reason), as contact centres do with ring-no-answer.
-- KEYS: 1 ix, 2 bucket, 3 active_buckets, 4 agent, 5 avail, 6 offers, 7 due, 8 events, 9 agent_work
-- ARGV: 1 ix_id, 2 agent_id, 3 events_maxlen, 4 max_misses (0 = never pause), 5 pause reason,
--       6 the channel's time when it reported the agent did not answer (ms; given: the ring
--       failed before the deadline - no answer, busy, unreachable - and counts as a miss)
-- Returns {now, paused (1|0)}. Refuses (CL_EARLY) before the deadline, so a late timer and an
-- accept cannot both win.
local ix_id, agent_id = ARGV[1], ARGV[2]
local ix = hmget(KEYS[1], OFFER_FIELDS)
if ix.state ~= 'offered' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if ix.agent ~= agent_id then return fail('STALE', 'offered to another agent') end
local now = now_ms()
if num(ARGV[6]) > 0 then
  now = channel_time(ARGV[6], ix.offered_ms, now)
elseif now < num(ix.offer_deadline) then
  return fail('EARLY', 'offer deadline not reached')
end
back_to_queue(ix_id, agent_id, ix, 'timeout', ARGV[3], now, ix.declined or '')
local misses = redis.call('HINCRBY', KEYS[4], 'misses', 1)
local max_misses = num(ARGV[4])
local paused = 0
if max_misses > 0 and misses >= max_misses then
  local a = hmget(KEYS[4], {'state', 'state_since'})
  if a.state == 'ready' then
    redis.call('HSET', KEYS[4], 'state', 'not_ready', 'reason', ARGV[5], 'state_since', now,
      'misses', 0)
    redis.call('ZREM', KEYS[5], agent_id)
    emit(KEYS[8], ARGV[3], {'ev', 'PAUSE', 't', now, 'queue', '', 'ix', '', 'agent', agent_id,
      'channel', '', 'reason', ARGV[5], 'state_ms', now - num(a.state_since)})
    paused = 1
  end
end
return {now, paused}
