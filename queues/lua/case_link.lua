-- case_link: a new report (an interaction) of something that already is an open case: the
-- interaction points at the case, its resident joins the case's subscribers (told of its
-- outcome like the first reporter), and the case counts one more report. Linking the same
-- interaction again changes nothing.
-- KEYS: 1 case, 2 subscribers, 3 ix, 4 events
-- ARGV: 1 case_id, 2 ix id, 3 subscriber key ("" none), 4 subscriber JSON, 5 by, 6 by agent,
--       7 events_maxlen
-- Returns {1 linked now | 0 already, number}. Refuses: NOTFOUND (case or interaction), STATE (the
-- case is closed), EXISTS (the interaction belongs to another case: detail is its number).
local case_id, ix_id = ARGV[1], ARGV[2]
local c = hmget(KEYS[1], {'number', 'status', 'unit', 'category'})
if not c.number then return fail('NOTFOUND', 'no case ' .. case_id) end
local ix = hmget(KEYS[3], {'state', 'case', 'channel'})
if not ix.state then return fail('NOTFOUND', 'no interaction ' .. ix_id) end
if ix.case == c.number then return {0, c.number} end
if ix.case and ix.case ~= '' then return fail('EXISTS', ix.case) end
if c.status == 'completed' or c.status == 'rejected' or c.status == 'duplicate' then
  return fail('STATE', 'case is ' .. c.status)
end
local now = now_ms()
redis.call('HSET', KEYS[3], 'case', c.number)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4]) end
redis.call('HINCRBY', KEYS[1], 'reports', 1)
redis.call('HSET', KEYS[1], 'updated_ms', now)
emit(KEYS[4], ARGV[7], {'ev', 'CASESTATUS', 't', now, 'queue', '', 'ix', ix_id,
  'agent', ARGV[6], 'channel', ix.channel or '', 'case', c.number, 'case_id', case_id,
  'category', c.category or '', 'unit', c.unit or '', 'action', 'link',
  'from_status', c.status, 'status', c.status, 'by', ARGV[5]})
return {1, c.number}
