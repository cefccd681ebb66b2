-- stats_apply: fold one batch of events into the statistics, exactly once.
--
-- The aggregator (router/stats.py) reads the events after the cursor, computes every change in
-- Python and sends them here. The batch applies only if the cursor still holds the id the batch
-- was read after: if another aggregator folded those events first, nothing is written and the
-- caller re-reads from the new cursor. Cursor check, all writes and the cursor move happen in
-- this one script, so no event is ever counted twice or lost, however many aggregators run.
--
-- KEYS: 1 cursor, 2.. every hash and index set written (each key once)
-- ARGV: 1 expected cursor ("" = nothing folded yet), 2 new cursor (id of the batch's last event),
--       3 number of updates U, then U updates, each:
--         key index (into KEYS), index-set key index (0 = none), ttl seconds (0 = keep),
--         delete (1 = DEL the key, no ops follow), number of ops N, then N triples
--         op ('i' HINCRBY, 'f' HINCRBYFLOAT, 's' HSET), field, value
--       An index set gets the hash's key name as a member and the same ttl.
-- Returns {1, new cursor} when applied, {0, current cursor} on a conflict.
-- No TIME, no randomness: the script is deterministic and replicates verbatim on Redis 6.2 and 7.
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return {0, current} end

-- Parse and check the whole batch before the first write, so a malformed one changes nothing.
local updates = {}
local at = 4
for _ = 1, tonumber(ARGV[3]) do
  local u = {key = KEYS[tonumber(ARGV[at])], index_at = tonumber(ARGV[at + 1]),
    ttl = tonumber(ARGV[at + 2]), delete = ARGV[at + 3] == '1', ops = {}}
  local n = tonumber(ARGV[at + 4])
  at = at + 5
  for _ = 1, n do
    local op = ARGV[at]
    if op ~= 'i' and op ~= 'f' and op ~= 's' then
      return redis.error_reply('CL_STATE unknown stats op ' .. tostring(op))
    end
    u.ops[#u.ops + 1] = {op, ARGV[at + 1], ARGV[at + 2]}
    at = at + 3
  end
  updates[#updates + 1] = u
end

for _, u in ipairs(updates) do
  if u.delete then
    redis.call('DEL', u.key)
  else
    local sets = {}
    for _, o in ipairs(u.ops) do
      if o[1] == 'i' then
        redis.call('HINCRBY', u.key, o[2], o[3])
      elseif o[1] == 'f' then
        redis.call('HINCRBYFLOAT', u.key, o[2], o[3])
      else
        sets[#sets + 1] = o[2]
        sets[#sets + 1] = o[3]
      end
    end
    if #sets > 0 then redis.call('HSET', u.key, unpack(sets)) end
    if u.ttl > 0 then redis.call('EXPIRE', u.key, u.ttl) end
    if u.index_at > 0 then
      local index = KEYS[u.index_at]
      redis.call('SADD', index, u.key)
      if u.ttl > 0 then redis.call('EXPIRE', index, u.ttl) end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
