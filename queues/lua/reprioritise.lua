-- reprioritise: a supervisor raises (or lowers) the priority of a waiting interaction
-- (PRIORITY). It moves to the bucket of the same queue, skills and target agent with the new
-- priority, keeps its position time and its escalation and max-wait timers: it is served before
-- those of lower priority, never sent to the back of a line.
-- KEYS: 1 ix, 2 old bucket, 3 active_buckets, 4 new bucket, 5 new bucket meta,
--       6 queue_buckets of the queue, 7 due, 8 events
-- ARGV: 1 ix_id, 2 new bucket_id, 3 routing fields JSON (priority), 4 bucket meta JSON,
--       5 events_maxlen, 6 bucket id the caller read it in, 7 who (user name)
local ix_id = ARGV[1]
local ix = hmget(KEYS[1], {'state', 'bucket', 'queue', 'channel', 'enqueued_ms', 'esc_at',
  'max_at', 'priority'})
if ix.state ~= 'queued' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if ix.bucket ~= ARGV[6] then return fail('STALE', 'the interaction moved meanwhile') end
local now = now_ms()
local f = cjson.decode(ARGV[3])
take_from_bucket(KEYS[2], KEYS[3], ix.bucket, KEYS[7], ix_id)
local pos = enter_bucket(KEYS[1], ix_id, KEYS[4], KEYS[5], ARGV[4], KEYS[6], KEYS[3], KEYS[7],
  ARGV[2], f, num(ix.enqueued_ms), num(ix.esc_at), num(ix.max_at))
emit(KEYS[8], ARGV[5], {'ev', 'PRIORITY', 't', now, 'queue', ix.queue, 'ix', ix_id, 'agent', '',
  'channel', ix.channel, 'from_priority', num(ix.priority), 'priority', f.priority or 0,
  'by', ARGV[7]})
return {now, pos}
