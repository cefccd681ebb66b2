-- case_status: a unit member (or a supervisor) moves a case on, with a note. The transitions:
--   open        -> assigned | in_progress | rejected | duplicate
--   assigned    -> open (handed back) | in_progress | rejected | duplicate
--   in_progress -> completed | rejected
--   completed, rejected, duplicate: final
-- The same status again (not final) adds a note only. A final status takes the case out of its
-- unit's open cases and the geo index. `duplicate` needs the open case it duplicates: this
-- case's subscribers (and its report count) join that case, so they hear of its outcome.
-- KEYS: 1 case, 2 history, 3 unit_cases(expected unit), 4 case_geo(category), 5 events,
--       6 target case (duplicate; else any key), 7 target subscribers, 8 own subscribers
-- ARGV: 1 case_id, 2 status, 3 expected unit, 4 by, 5 by agent, 6 note, 7 public note,
--       8 events_maxlen, 9 target case id ("" unless duplicate)
-- Returns {now, previous status}. Refuses: NOTFOUND, STALE (its unit changed since the caller
-- checked who may act), STATE (a transition not in the table, a bad duplicate target).
local ALLOWED = {
  open = {assigned = true, in_progress = true, rejected = true, duplicate = true},
  assigned = {open = true, in_progress = true, rejected = true, duplicate = true},
  in_progress = {completed = true, rejected = true},
}
local FINAL = {completed = true, rejected = true, duplicate = true}
local case_id, status, target_id = ARGV[1], ARGV[2], ARGV[9]
local c = hmget(KEYS[1], {'number', 'status', 'unit', 'category', 'ix', 'channel', 'assignee',
  'reports'})
if not c.number then return fail('NOTFOUND', 'no case ' .. case_id) end
if c.unit ~= ARGV[3] then return fail('STALE', 'the case moved to unit ' .. tostring(c.unit)) end
local from = c.status
if FINAL[from] then return fail('STATE', 'case is ' .. from) end
if status ~= from and not (ALLOWED[from] or {})[status] then
  return fail('STATE', 'case cannot go from ' .. from .. ' to ' .. status)
end
local target_number = ''
if status == 'duplicate' then
  if target_id == '' or target_id == case_id then
    return fail('STATE', 'a duplicate needs another open case')
  end
  local t = hmget(KEYS[6], {'number', 'status', 'category'})
  if not t.number then return fail('NOTFOUND', 'no case ' .. target_id) end
  if FINAL[t.status] then return fail('STATE', 'case ' .. t.number .. ' is ' .. t.status) end
  target_number = t.number
elseif target_id ~= '' then
  return fail('STATE', 'only a duplicate names another case')
end
local now = now_ms()
local fields = {'status', status, 'updated_ms', now}
-- who works it: the member who takes it (assigned), or starts it when nobody had taken it
local assignee = c.assignee or ''
if status ~= from then
  if status == 'open' then
    assignee = ''
  elseif ARGV[5] ~= '' and (status == 'assigned' or (status == 'in_progress' and assignee == '')) then
    assignee = ARGV[5]
  end
end
fields[#fields + 1] = 'assignee'; fields[#fields + 1] = assignee
if FINAL[status] then
  fields[#fields + 1] = 'closed_ms'; fields[#fields + 1] = now
  redis.call('ZREM', KEYS[3], case_id)
  redis.call('ZREM', KEYS[4], case_id)
end
if status == 'duplicate' then
  fields[#fields + 1] = 'duplicate_of'; fields[#fields + 1] = target_number
  local subs = redis.call('HGETALL', KEYS[8])
  for i = 1, #subs, 2 do redis.call('HSETNX', KEYS[7], subs[i], subs[i + 1]) end
  redis.call('HINCRBY', KEYS[6], 'reports', math.max(1, num(c.reports)))
  redis.call('HSET', KEYS[6], 'updated_ms', now)
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], cjson.encode({status = status, note = ARGV[6],
  public_note = ARGV[7], by = ARGV[4], t = now, unit = c.unit, duplicate_of = target_number}))
emit(KEYS[5], ARGV[8], {'ev', 'CASESTATUS', 't', now, 'queue', '', 'ix', c.ix or '',
  'agent', ARGV[5], 'channel', c.channel or '', 'case', c.number, 'case_id', case_id,
  'category', c.category or '', 'unit', c.unit, 'action', 'status', 'from_status', from,
  'status', status, 'duplicate_of', target_number, 'by', ARGV[4]})
return {now, from}
