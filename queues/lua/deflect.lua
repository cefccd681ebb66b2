-- deflect: record a contact that ended in self-service without ever entering a queue: served by
-- it alone (IVR information leaf, knowledge page: DEFLECTED, state deflected), or left there
-- (a caller who hangs up in the IVR menus: IVRABANDON, state abandoned). Either way it gets a
-- reference number, and no queue figure counts it.
-- KEYS: 1 ix, 2 events, 3 ref_seq, 4 ref_index
-- ARGV: 1 ix_id, 2 fields JSON (channel, queue, resident, language, subject, meta),
--       3 reason (topic, or the IVR node left at), 4 city tz offset ms, 5 events_maxlen,
--       6 "abandoned" for a contact left in self-service (default: deflected)
local ix_id = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 1 then return fail('EXISTS', ix_id) end
local f = cjson.decode(ARGV[2])
local now = now_ms()
local year = year_of(now + num(ARGV[4]))
local ref = string.format('%d-%06d', year, redis.call('HINCRBY', KEYS[3], tostring(year), 1))
redis.call('HSET', KEYS[4], ref, ix_id)
hset_table(KEYS[1], f)
local left = ARGV[6] == 'abandoned'
redis.call('HSET', KEYS[1], 'id', ix_id, 'ref', ref, 'state', left and 'abandoned' or 'deflected',
  'created_ms', now, 'ended_ms', now)
emit(KEYS[2], ARGV[5], {'ev', left and 'IVRABANDON' or 'DEFLECTED', 't', now,
  'queue', f.queue or '', 'ix', ix_id,
  'agent', '', 'channel', f.channel or '', 'ref', ref, 'reason', ARGV[3]})
return {ix_id, ref}
