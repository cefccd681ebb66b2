-- enqueue: a new interaction enters its first queue (ENTERQUEUE, first=1).
-- KEYS: 1 ix, 2 bucket, 3 bucket_meta, 4 active_buckets, 5 queue_buckets, 6 due, 7 events,
--       8 ref_seq, 9 ref_index, 10 external-id index
-- ARGV: 1 ix_id, 2 bucket_id, 3 events_maxlen, 4 city tz offset ms (reference year),
--       5 escalation after ms (0 none), 6 max wait ms (0 none), 7 external key ("" none),
--       8 interaction fields JSON, 9 bucket meta JSON
-- Returns {ix_id, ref, enqueued_ms, created (1|0)}. An external key seen before returns the
-- id of the interaction it created (ref/time left for the caller to read), so a webhook or AMI event delivered twice makes one interaction.
local ix_id, bucket_id, maxlen = ARGV[1], ARGV[2], ARGV[3]
local ext = ARGV[7]
if ext ~= '' then
  local known = redis.call('HGET', KEYS[10], ext)
  if known then return {known, '', 0, 0} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return fail('EXISTS', ix_id) end
local f = cjson.decode(ARGV[8])
local now = now_ms()
local year = year_of(now + num(ARGV[4]))
local seq = redis.call('HINCRBY', KEYS[8], tostring(year), 1)
local ref = string.format('%d-%06d', year, seq)
redis.call('HSET', KEYS[9], ref, ix_id)
if ext ~= '' then redis.call('HSET', KEYS[10], ext, ix_id) end

if redis.call('EXISTS', KEYS[3]) == 0 then hset_table(KEYS[3], cjson.decode(ARGV[9])) end
redis.call('SADD', KEYS[5], bucket_id)

local esc_at = num(ARGV[5]) > 0 and now + num(ARGV[5]) or 0
local max_at = num(ARGV[6]) > 0 and now + num(ARGV[6]) or 0
hset_table(KEYS[1], f)
redis.call('HSET', KEYS[1], 'id', ix_id, 'ref', ref, 'state', 'queued', 'bucket', bucket_id,
  'created_ms', now, 'enqueued_ms', now, 'entered_ms', now, 'first_entered_ms', now,
  'attempts', 0, 'esc_step', 0, 'esc_at', esc_at, 'max_at', max_at, 'transfers', 0)
place_in_bucket(KEYS[2], KEYS[4], bucket_id, KEYS[6], ix_id, now, esc_at, max_at)
local pos = redis.call('ZRANK', KEYS[2], ix_id) + 1
redis.call('HSET', KEYS[1], 'origpos', pos)
emit(KEYS[7], maxlen, {'ev', 'ENTERQUEUE', 't', now, 'queue', f.queue, 'ix', ix_id, 'agent', '',
  'channel', f.channel, 'ref', ref, 'priority', f.priority or 0, 'first', 1, 'pos', pos})
return {ix_id, ref, now, 1}
