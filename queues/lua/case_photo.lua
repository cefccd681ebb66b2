-- case_photo: a unit member adds a photo to a case (the crew's "after" photo). The file is
-- already written (data_dir/uploads/case-<id>/...); this appends its reference to the case's
-- `photos` list, adds a history entry (the same status, action "photo") and a CASESTATUS event
-- (action photo, status unchanged). Any status: the photo of finished work often comes last.
-- KEYS: 1 case, 2 history, 3 events
-- ARGV: 1 case_id, 2 photo reference, 3 expected unit, 4 most photos a case keeps, 5 by,
--       6 by agent, 7 note, 8 events_maxlen
-- Returns {now, index of the new photo (0-based)}. Refuses: NOTFOUND, STALE (its unit changed
-- since the caller checked who may act), STATE (the case has the most photos already).
local case_id = ARGV[1]
local c = hmget(KEYS[1], {'number', 'status', 'unit', 'category', 'ix', 'channel', 'photos'})
if not c.number then return fail('NOTFOUND', 'no case ' .. case_id) end
if c.unit ~= ARGV[3] then return fail('STALE', 'the case moved to unit ' .. tostring(c.unit)) end
local ok, photos = pcall(cjson.decode, c.photos or '[]')
if not ok or type(photos) ~= 'table' then photos = {} end
if #photos >= num(ARGV[4]) then
  return fail('STATE', 'the case has ' .. #photos .. ' photos, the most it keeps')
end
photos[#photos + 1] = ARGV[2]
local now = now_ms()
redis.call('HSET', KEYS[1], 'photos', cjson.encode(photos), 'updated_ms', now)
redis.call('RPUSH', KEYS[2], cjson.encode({status = c.status, action = 'photo',
  note = ARGV[7], public_note = '', by = ARGV[5], t = now, unit = c.unit, photo = #photos - 1}))
emit(KEYS[3], ARGV[8], {'ev', 'CASESTATUS', 't', now, 'queue', '', 'ix', c.ix or '',
  'agent', ARGV[6], 'channel', c.channel or '', 'case', c.number, 'case_id', case_id,
  'category', c.category or '', 'unit', c.unit, 'action', 'photo', 'from_status', c.status,
  'status', c.status, 'by', ARGV[5]})
return {now, #photos - 1}
