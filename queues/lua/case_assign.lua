-- case_assign: the case goes to another unit (the category's rule was wrong for this one). It
-- becomes `open` in the new unit's queue, keeping its due date; nobody is assigned.
-- KEYS: 1 case, 2 history, 3 unit_cases(old unit), 4 unit_cases(new unit), 5 events
-- ARGV: 1 case_id, 2 expected old unit, 3 new unit, 4 by, 5 by agent, 6 note, 7 public note,
--       8 events_maxlen
-- Returns {now}. Refuses: NOTFOUND, STALE (the unit changed meanwhile), STATE (a closed case,
-- or already that unit).
local case_id, unit = ARGV[1], ARGV[3]
local c = hmget(KEYS[1], {'number', 'status', 'unit', 'category', 'ix', 'channel', 'due_ms'})
if not c.number then return fail('NOTFOUND', 'no case ' .. case_id) end
if c.unit ~= ARGV[2] then return fail('STALE', 'the case moved to unit ' .. tostring(c.unit)) end
if c.status == 'completed' or c.status == 'rejected' or c.status == 'duplicate' then
  return fail('STATE', 'case is ' .. c.status)
end
if unit == c.unit then return fail('STATE', 'the case is already with unit ' .. unit) end
local now = now_ms()
redis.call('ZREM', KEYS[3], case_id)
redis.call('ZADD', KEYS[4], num(c.due_ms), case_id)
redis.call('HSET', KEYS[1], 'unit', unit, 'status', 'open', 'assignee', '', 'updated_ms', now)
redis.call('RPUSH', KEYS[2], cjson.encode({status = 'open', note = ARGV[6],
  public_note = ARGV[7], by = ARGV[4], t = now, unit = unit}))
emit(KEYS[5], ARGV[8], {'ev', 'CASESTATUS', 't', now, 'queue', '', 'ix', c.ix or '',
  'agent', ARGV[5], 'channel', c.channel or '', 'case', c.number, 'case_id', case_id,
  'category', c.category or '', 'unit', unit, 'action', 'unit', 'from_unit', c.unit,
  'from_status', c.status, 'status', 'open', 'by', ARGV[4]})
return {now}
