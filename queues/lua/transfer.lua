-- transfer: move an interaction to another queue or to a named (second-line) agent. From
-- `connected` the agent hands it over (their slot is freed, no wrap-up); from `queued` a
-- supervisor moves it. It keeps its original position time unless keep_position is 0.
-- Writes TRANSFER in the old queue and ENTERQUEUE (first=0) in the new one.
-- KEYS: 1 ix, 2 old bucket, 3 active_buckets, 4 new bucket, 5 new bucket meta, 6 new queue_buckets,
--       7 due, 8 agent (holder, or any key when queued), 9 avail, 10 events, 11 agent_work
-- ARGV: 1 ix_id, 2 holder agent_id ("" when queued), 3 new bucket_id, 4 routing fields JSON
--       (queue, priority, skills, target_agent, queue_priority), 5 bucket meta JSON,
--       6 keep_position (1|0), 7 escalation after ms, 8 max wait ms, 9 note, 10 events_maxlen,
--       11 requested by
-- Returns {now, position in the new bucket}.
local ix_id, holder, new_bucket = ARGV[1], ARGV[2], ARGV[3]
local ix = hmget(KEYS[1], {'state', 'ref', 'agent', 'bucket', 'queue', 'channel', 'entered_ms',
  'enqueued_ms', 'connected_ms', 'transfers'})
if ix.state == 'connected' then
  if ix.agent ~= holder then return fail('FORBIDDEN', 'interaction is with another agent') end
elseif ix.state == 'queued' then
  if holder ~= '' then return fail('STATE', 'interaction is not connected') end
  -- the caller read the bucket before this script: refuse if it moved (escalation) meanwhile
  if not redis.call('ZSCORE', KEYS[2], ix_id) then
    return fail('STALE', 'interaction moved to another bucket')
  end
else
  return fail('STATE', 'interaction is ' .. tostring(ix.state))
end
local f = cjson.decode(ARGV[4])
local now = now_ms()
local talk = 0
local waited_until = now
if ix.state == 'connected' then
  talk = now - num(ix.connected_ms)
  waited_until = num(ix.connected_ms)
  release_slot(KEYS[8], KEYS[9], KEYS[11], holder, ix_id, ix.channel, now)
  redis.call('HSET', KEYS[1], 'agent', '', 'offered_ms', 0, 'connected_ms', 0)
else
  take_from_bucket(KEYS[2], KEYS[3], ix.bucket, KEYS[7], ix_id)
end
emit(KEYS[10], ARGV[10], {'ev', 'TRANSFER', 't', now, 'queue', ix.queue, 'ix', ix_id,
  'agent', holder, 'channel', ix.channel, 'from_state', ix.state, 'target_queue', f.queue,
  'target_agent', f.target_agent or '', 'wait_ms', waited_until - num(ix.entered_ms), 'talk_ms', talk, 'keep_position', ARGV[6], 'note', ARGV[9], 'by', ARGV[11]})
local score = ARGV[6] == '1' and num(ix.enqueued_ms) or now
local esc_at = num(ARGV[7]) > 0 and now + num(ARGV[7]) or 0
local max_at = num(ARGV[8]) > 0 and now + num(ARGV[8]) or 0
f.entered_ms = now
f.enqueued_ms = score
f.esc_step = 0
f.transfers = num(ix.transfers) + 1
f.transfer_note = ARGV[9]
-- the agent who handed it over is not offered it straight back
f.declined = holder
local pos = enter_bucket(KEYS[1], ix_id, KEYS[4], KEYS[5], ARGV[5], KEYS[6], KEYS[3], KEYS[7],
  new_bucket, f, score, esc_at, max_at)
emit(KEYS[10], ARGV[10], {'ev', 'ENTERQUEUE', 't', now, 'queue', f.queue, 'ix', ix_id,
  'agent', '', 'channel', ix.channel, 'ref', ix.ref or '', 'priority', f.priority or 0, 'first', 0,
  'pos', pos})
return {now, pos}
