-- abandon: the resident left before an agent connected (ABANDON with the exact wait). `at_ms` is
-- the channel's own time of leaving when it has one (e.g. Asterisk's hangup), clamped to
-- [entered, now]; short abandons (wait < short_abandon) are flagged so the rates exclude them.
-- KEYS: 1 ix, 2 bucket, 3 active_buckets, 4 due, 5 offers, 6 agent, 7 avail, 8 events, 9 agent_work
-- ARGV: 1 ix_id, 2 at_ms (0 = now), 3 short_abandon ms, 4 events_maxlen, 5 agent_id of the offer
-- Returns {ended_ms, wait_ms, short (1|0)}.
local ix_id = ARGV[1]
local ix = hmget(KEYS[1], {'state', 'agent', 'bucket', 'queue', 'channel', 'entered_ms',
  'first_entered_ms', 'origpos'})
if ix.state ~= 'queued' and ix.state ~= 'offered' then
  return fail('STATE', 'interaction is ' .. tostring(ix.state))
end
if ix.state == 'offered' and ix.agent ~= ARGV[5] then return fail('STALE', 'offer changed') end
-- the caller read the bucket before this script: refuse if it moved (escalation) meanwhile
if ix.state == 'queued' and not redis.call('ZSCORE', KEYS[2], ix_id) then
  return fail('STALE', 'interaction moved to another bucket')
end
local now = now_ms()
local at = num(ARGV[2])
if at <= 0 or at > now then at = now end
if at < num(ix.entered_ms) then at = num(ix.entered_ms) end
local pos = 0
if ix.state == 'queued' then
  pos = take_from_bucket(KEYS[2], KEYS[3], ix.bucket, KEYS[4], ix_id)
else
  redis.call('ZREM', KEYS[5], ix_id)
  release_slot(KEYS[6], KEYS[7], KEYS[9], ix.agent, ix_id, ix.channel, now)
end
local wait = at - num(ix.entered_ms)
local short = wait < num(ARGV[3]) and 1 or 0
redis.call('HSET', KEYS[1], 'state', 'abandoned', 'ended_ms', at, 'short_abandon', short)
emit(KEYS[8], ARGV[4], {'ev', 'ABANDON', 't', at, 'queue', ix.queue, 'ix', ix_id,
  'agent', ix.agent or '', 'channel', ix.channel, 'wait_ms', wait,
  'total_wait_ms', at - num(ix.first_entered_ms), 'pos', pos, 'origpos', num(ix.origpos),
  'short', short, 'during', ix.state})
return {at, wait, short}
