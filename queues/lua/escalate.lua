-- escalate: apply the next escalation step to a waiting interaction (ESCALATE): lower a minimum
-- level, add a skill, raise priority, or move it to another queue. It keeps its position time,
-- so it is not sent to the back of any line. A queue move also writes ENTERQUEUE (first=0).
-- KEYS: 1 ix, 2 old bucket, 3 active_buckets, 4 new bucket, 5 new bucket meta,
--       6 queue_buckets of the (new) queue, 7 due, 8 events
-- ARGV: 1 ix_id, 2 expected step index, 3 new bucket_id, 4 routing fields JSON (queue, priority,
--       skills, queue_priority), 5 bucket meta JSON, 6 next escalation step's delay after
--       entering the queue (ms, 0 none), 7 the queue's max wait (ms, 0 none), 8 events_maxlen,
--       9 bucket id the caller read it in
-- The expected step makes it idempotent: two dispatchers firing the same step apply it once.
local ix_id, step = ARGV[1], num(ARGV[2])
local ix = hmget(KEYS[1], {'state', 'ref', 'bucket', 'queue', 'channel', 'enqueued_ms', 'esc_step',
  'esc_at', 'entered_ms'})
if ix.state ~= 'queued' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if num(ix.esc_step) ~= step or ix.bucket ~= ARGV[9] then
  return fail('STALE', 'step already applied')
end
local now = now_ms()
if now < num(ix.esc_at) then return fail('EARLY', 'escalation not due') end
local f = cjson.decode(ARGV[4])
local moved = f.queue ~= ix.queue
-- a queue move starts the new queue's steps from the first; otherwise the next step is due
f.esc_step = moved and 0 or step + 1
local entered = num(ix.entered_ms)
if moved then
  entered = now
  f.entered_ms = now
end
local esc_at = num(ARGV[6]) > 0 and entered + num(ARGV[6]) or 0
local max_at = num(ARGV[7]) > 0 and entered + num(ARGV[7]) or 0
take_from_bucket(KEYS[2], KEYS[3], ix.bucket, KEYS[7], ix_id)
local pos = enter_bucket(KEYS[1], ix_id, KEYS[4], KEYS[5], ARGV[5], KEYS[6], KEYS[3], KEYS[7],
  ARGV[3], f, num(ix.enqueued_ms), esc_at, max_at)
emit(KEYS[8], ARGV[8], {'ev', 'ESCALATE', 't', now, 'queue', f.queue, 'ix', ix_id, 'agent', '',
  'channel', ix.channel, 'step', step, 'from_queue', ix.queue, 'priority', f.priority or 0,
  'skills', f.skills or '{}'})
if moved then
  emit(KEYS[8], ARGV[8], {'ev', 'ENTERQUEUE', 't', now, 'queue', f.queue, 'ix', ix_id,
    'agent', '', 'channel', ix.channel, 'ref', ix.ref or '', 'priority', f.priority or 0, 'first', 0,
    'pos', pos})
end
return {now, pos}
