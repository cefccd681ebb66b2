-- case_create: a new case (service request), from an interaction or on its own. Numbers it
-- PREFIX-YEAR-SEQUENCE in the city's year, files it by creation time (Open311 lists, reports),
-- in its unit's open cases (by due date) and,
-- with a location, in its category's geo index of open cases (duplicate search); records the
-- reporter as the first subscriber of its notices; sets the interaction's `case`.
-- KEYS: 1 case, 2 history, 3 subscribers, 4 unit_cases(unit), 5 case_geo(category), 6 case_seq,
--       7 case_numbers, 8 events, 9 origin ix (the case key itself when standalone),
--       10 case_by_created (every case by creation time)
-- ARGV: 1 case_id, 2 fields JSON (category, unit, description, address, lat, lon, photos,
--       language, channel), 3 tz offset ms, 4 number prefix, 5 resolution target ms,
--       6 subscriber key ("" none), 7 subscriber JSON, 8 origin ix id ("" standalone), 9 by,
--       10 by agent, 11 note, 12 public note, 13 events_maxlen
-- Returns {number, now, due_ms}. Refuses: NOTFOUND (no such interaction), EXISTS (it already
-- has a case: detail is its number), STATE (a location out of range), EXISTS (case id taken).
local case_id, ix_id = ARGV[1], ARGV[8]
local f = cjson.decode(ARGV[2])
local ix = {}
if ix_id ~= '' then
  ix = hmget(KEYS[9], {'state', 'queue', 'channel', 'case'})
  if not ix.state then return fail('NOTFOUND', 'no interaction ' .. ix_id) end
  if ix.case and ix.case ~= '' then return fail('EXISTS', ix.case) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return fail('EXISTS', 'case id taken') end
local lat, lon = tonumber(f.lat or ''), tonumber(f.lon or '')
local located = lat ~= nil and lon ~= nil
if (f.lat or '') ~= '' or (f.lon or '') ~= '' then
  -- the limits of Redis' geo index (Web Mercator): checked before anything is written
  if not located or lat < -85.05112878 or lat > 85.05112878 or lon < -180 or lon > 180 then
    return fail('STATE', 'invalid location')
  end
end
local now = now_ms()
local year = year_of(now + num(ARGV[3]))
local seq = redis.call('HINCRBY', KEYS[6], year, 1)
local number = ARGV[4] .. '-' .. year .. '-' .. string.format('%06d', seq)
local due = now + num(ARGV[5])
f.number = number
f.status = 'open'
f.assignee = ''
f.ix = ix_id
f.created_ms = now
f.updated_ms = now
f.due_ms = due
f.reports = 1
hset_table(KEYS[1], f)
redis.call('HSET', KEYS[7], number, case_id)
redis.call('ZADD', KEYS[10], now, case_id)
redis.call('RPUSH', KEYS[2], cjson.encode({status = 'open', note = ARGV[11],
  public_note = ARGV[12], by = ARGV[9], t = now, unit = f.unit}))
if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], ARGV[6], ARGV[7]) end
redis.call('ZADD', KEYS[4], due, case_id)
if located then redis.call('GEOADD', KEYS[5], lon, lat, case_id) end
if ix_id ~= '' then redis.call('HSET', KEYS[9], 'case', number) end
emit(KEYS[8], ARGV[13], {'ev', 'CASECREATED', 't', now, 'queue', ix.queue or '', 'ix', ix_id,
  'agent', ARGV[10], 'channel', f.channel or '', 'case', number, 'case_id', case_id,
  'category', f.category or '', 'unit', f.unit or '', 'status', 'open', 'due_ms', due,
  'by', ARGV[9]})
return {number, now, due}
