-- max_wait: the interaction waited its queue's maximum (EXITWITHTIMEOUT). With an overflow queue
-- it enters that queue keeping its position time (ENTERQUEUE first=0); without one it ends in
-- state `timeout`.
-- KEYS: 1 ix, 2 bucket, 3 active_buckets, 4 due, 5 events, 6 overflow bucket, 7 its meta,
--       8 overflow queue_buckets
-- ARGV: 1 ix_id, 2 overflow queue ("" none), 3 overflow bucket_id, 4 routing fields JSON,
--       5 bucket meta JSON, 6 overflow escalation after ms, 7 overflow max wait ms,
--       8 events_maxlen, 9 bucket id the caller read it in
local ix_id, overflow = ARGV[1], ARGV[2]
local ix = hmget(KEYS[1], {'state', 'ref', 'bucket', 'queue', 'channel', 'entered_ms',
  'first_entered_ms', 'enqueued_ms', 'max_at', 'origpos'})
if ix.state ~= 'queued' then return fail('STATE', 'interaction is ' .. tostring(ix.state)) end
if ix.bucket ~= ARGV[9] then return fail('STALE', 'interaction moved meanwhile') end
local now = now_ms()
if num(ix.max_at) <= 0 or now < num(ix.max_at) then return fail('EARLY', 'max wait not reached') end
local pos = take_from_bucket(KEYS[2], KEYS[3], ix.bucket, KEYS[4], ix_id)
emit(KEYS[5], ARGV[8], {'ev', 'EXITWITHTIMEOUT', 't', now, 'queue', ix.queue, 'ix', ix_id,
  'agent', '', 'channel', ix.channel, 'wait_ms', now - num(ix.entered_ms),
  'total_wait_ms', now - num(ix.first_entered_ms), 'pos', pos, 'origpos', num(ix.origpos),
  'overflow', overflow})
if overflow == '' then
  redis.call('HSET', KEYS[1], 'state', 'timeout', 'ended_ms', now)
  return {now, 'timeout'}
end
local f = cjson.decode(ARGV[4])
f.entered_ms = now
f.esc_step = 0
local esc_at = num(ARGV[6]) > 0 and now + num(ARGV[6]) or 0
local max_at = num(ARGV[7]) > 0 and now + num(ARGV[7]) or 0
local npos = enter_bucket(KEYS[1], ix_id, KEYS[6], KEYS[7], ARGV[5], KEYS[8], KEYS[3], KEYS[4],
  ARGV[3], f, num(ix.enqueued_ms), esc_at, max_at)
emit(KEYS[5], ARGV[8], {'ev', 'ENTERQUEUE', 't', now, 'queue', overflow, 'ix', ix_id, 'agent', '',
  'channel', ix.channel, 'ref', ix.ref or '', 'priority', f.priority or 0, 'first', 0, 'pos', npos})
return {now, 'queued'}
