-- deflect: record a contact served by self-service alone (IVR information leaf, knowledge
-- page): it gets a reference number and a DEFLECTED event but never enters a queue.
-- KEYS: 1 ix, 2 events, 3 ref_seq, 4 ref_index
-- ARGV: 1 ix_id, 2 fields JSON (channel, queue, resident, language, subject, meta),
--       3 reason, 4 city tz offset ms, 5 events_maxlen
local ix_id = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 1 then return fail('EXISTS', ix_id) end
local f = cjson.decode(ARGV[2])
local now = now_ms()
local year = year_of(now + num(ARGV[4]))
local ref = string.format('%d-%06d', year, redis.call('HINCRBY', KEYS[3], tostring(year), 1))
redis.call('HSET', KEYS[4], ref, ix_id)
hset_table(KEYS[1], f)
redis.call('HSET', KEYS[1], 'id', ix_id, 'ref', ref, 'state', 'deflected', 'created_ms', now,
  'ended_ms', now)
emit(KEYS[2], ARGV[5], {'ev', 'DEFLECTED', 't', now, 'queue', f.queue or '', 'ix', ix_id,
  'agent', '', 'channel', f.channel or '', 'ref', ref, 'reason', ARGV[3]})
return {ix_id, ref}
