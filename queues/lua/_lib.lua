-- Prelude prepended to every cityline script (queues/scripts.py). Kept small: helpers only.
-- Redis 6.2 replicates scripts verbatim unless told otherwise, and a script that read TIME may not
-- write then; effects replication makes TIME safe. On 7.x this call is a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local CHANNELS = {'voice', 'chat', 'sms', 'email', 'telegram', 'webform'}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Errors carry a stable code the Python side maps to an exception: "CL_<CODE> detail".
-- Every script checks all its preconditions before its first write, so an error changes nothing.
local function fail(code, detail)
  return redis.error_reply('CL_' .. code .. ' ' .. (detail or ''))
end

local function num(v)
  return tonumber(v) or 0
end

-- A channel's own time of a transition (Asterisk's event Timestamp), more exact than ours; it is
-- kept between the previous transition and Redis' now, so durations are never negative and the
-- stream stays in order of cause. 0 or absent: now.
local function channel_time(at_ms, not_before, now)
  local at = num(at_ms)
  if at <= 0 or at > now then at = now end
  if at < num(not_before) then at = num(not_before) end
  return at
end

local function hmget(key, names)
  local vals = redis.call('HMGET', key, unpack(names))
  local m = {}
  for i, n in ipairs(names) do m[n] = vals[i] or nil end
  return m
end

local function emit(stream, maxlen, fields)
  local args = {stream, 'MAXLEN', '~', maxlen, '*'}
  for i = 1, #fields do args[#args + 1] = tostring(fields[i]) end
  return redis.call('XADD', unpack(args))
end

local function agent_snapshot(akey)
  local names = {'state', 'blend_vt', 'blend_tv', 'idle_since', 'skills'}
  for _, ch in ipairs(CHANNELS) do
    names[#names + 1] = 'cap:' .. ch
    names[#names + 1] = 'load:' .. ch
  end
  return hmget(akey, names)
end

local function text_load(a)
  local s = 0
  for _, ch in ipairs(CHANNELS) do
    if ch ~= 'voice' then s = s + num(a['load:' .. ch]) end
  end
  return s
end

-- The capacity and blending rule, in one place: may this agent take one more of `channel`?
local function can_take(a, channel)
  if a.state ~= 'ready' then return false end
  if num(a['load:' .. channel]) >= num(a['cap:' .. channel]) then return false end
  if channel == 'voice' then
    if a.blend_vt ~= '1' and text_load(a) > 0 then return false end
  elseif a.blend_tv ~= '1' and num(a['load:voice']) > 0 then
    return false
  end
  return true
end

-- Keep the agent's membership of the available set true to its state and loads.
local function refresh_avail(akey, avail_key, agent_id)
  local a = agent_snapshot(akey)
  for _, ch in ipairs(CHANNELS) do
    if can_take(a, ch) then
      redis.call('ZADD', avail_key, num(a.idle_since), agent_id)
      return true
    end
  end
  redis.call('ZREM', avail_key, agent_id)
  return false
end

local function skills_ok(have_json, need_json)
  local have = cjson.decode(have_json or '{}')
  local need = cjson.decode(need_json or '{}')
  for skill, level in pairs(need) do
    if num(have[skill]) < num(level) then return false end
  end
  return true
end

local function word_in(list, word)
  for w in string.gmatch(list or '', '%S+') do
    if w == word then return true end
  end
  return false
end

-- Year of a UTC-shifted ms timestamp (days-from-civil inverse; no os.date inside Redis).
local function year_of(ms)
  local z = math.floor(ms / 86400000) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local y = yoe + era * 400
  if mp >= 10 then y = y + 1 end
  return y
end

-- Next moment the waiting timers need this interaction (escalation step or max wait), 0 = never.
local function next_due(esc_at, max_at)
  esc_at, max_at = num(esc_at), num(max_at)
  if esc_at > 0 and max_at > 0 then return math.min(esc_at, max_at) end
  return math.max(esc_at, max_at)
end

-- Put a waiting interaction into a bucket at its position time and arm its timers.
local function place_in_bucket(bkey, active_key, bucket_id, due_key, ix_id, score, esc_at, max_at)
  redis.call('ZADD', bkey, score, ix_id)
  redis.call('SADD', active_key, bucket_id)
  local due = next_due(esc_at, max_at)
  if due > 0 then redis.call('ZADD', due_key, due, ix_id) else redis.call('ZREM', due_key, ix_id) end
end

-- Take a waiting interaction out of its bucket; returns its 1-based position there (0 if absent).
local function take_from_bucket(bkey, active_key, bucket_id, due_key, ix_id)
  local rank = redis.call('ZRANK', bkey, ix_id)
  redis.call('ZREM', bkey, ix_id)
  if redis.call('ZCARD', bkey) == 0 then redis.call('SREM', active_key, bucket_id) end
  redis.call('ZREM', due_key, ix_id)
  if rank then return rank + 1 end
  return 0
end

-- Give the agent back the slot an interaction held.
local function release_slot(akey, avail_key, work_key, agent_id, ix_id, channel, now)
  local load = redis.call('HINCRBY', akey, 'load:' .. channel, -1)
  if load < 0 then redis.call('HSET', akey, 'load:' .. channel, 0) end
  redis.call('SREM', work_key, ix_id)
  redis.call('HSET', akey, 'idle_since', now)
  refresh_avail(akey, avail_key, agent_id)
end

-- Write a decoded JSON object into a hash (values as strings; tables re-encoded as JSON).
local function hset_table(key, t)
  local args = {}
  for k, v in pairs(t) do
    args[#args + 1] = k
    if v == cjson.null then
      args[#args + 1] = ''
    elseif type(v) == 'table' then
      args[#args + 1] = cjson.encode(v)
    else
      args[#args + 1] = tostring(v)
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

-- An offer that ended without an answer: the interaction returns to its own place (its position
-- time is unchanged) and the agent's slot is freed. Shared by reject and offer_timeout.
-- KEYS layout of both scripts: 1 ix, 2 bucket, 3 active_buckets, 4 agent, 5 avail, 6 offers,
-- 7 due, 8 events, 9 agent_work
local function back_to_queue(ix_id, agent_id, ix, reason, maxlen, now, declined)
  redis.call('ZREM', KEYS[6], ix_id)
  redis.call('HSET', KEYS[1], 'state', 'queued', 'agent', '', 'offered_ms', 0, 'offer_deadline', 0,
    'attempts', num(ix.attempts) + 1, 'declined', declined)
  place_in_bucket(KEYS[2], KEYS[3], ix.bucket, KEYS[7], ix_id, num(ix.enqueued_ms), ix.esc_at,
    ix.max_at)
  release_slot(KEYS[4], KEYS[5], KEYS[9], agent_id, ix_id, ix.channel, now)
  emit(KEYS[8], maxlen, {'ev', 'RINGNOANSWER', 't', now, 'queue', ix.queue, 'ix', ix_id,
    'agent', agent_id, 'channel', ix.channel, 'ring_ms', now - num(ix.offered_ms),
    'reason', reason})
end

local OFFER_FIELDS = {'state', 'agent', 'bucket', 'queue', 'channel', 'enqueued_ms', 'offered_ms',
  'offer_deadline', 'attempts', 'esc_at', 'max_at', 'declined'}

-- Enter a (possibly new) bucket of a (possibly new) queue: write the bucket's meta once, record
-- the bucket under its queue, update the interaction's routing fields and place it at `score`.
local function enter_bucket(ix_key, ix_id, bkey, meta_key, meta_json, qb_key, active_key, due_key,
                            bucket_id, fields, score, esc_at, max_at)
  if redis.call('EXISTS', meta_key) == 0 then hset_table(meta_key, cjson.decode(meta_json)) end
  redis.call('SADD', qb_key, bucket_id)
  hset_table(ix_key, fields)
  redis.call('HSET', ix_key, 'state', 'queued', 'bucket', bucket_id, 'esc_at', esc_at,
    'max_at', max_at)
  place_in_bucket(bkey, active_key, bucket_id, due_key, ix_id, score, esc_at, max_at)
  -- rank, not ZCOUNT: members with the same score but a later id are behind it
  return redis.call('ZRANK', bkey, ix_id) + 1
end
