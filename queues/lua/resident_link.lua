-- resident_link: recognise the resident an interaction comes from. With the resident's consent,
-- every identity the contact carries (the address it came from, contacts it gave) is linked to
-- one resident, created if none is known and merged if they belonged to several (the resident
-- who consented first absorbs the others: identities and history). Without consent nothing is
-- linked; the interaction joins a history only when its identity already belongs to a resident
-- who consented earlier. Not a routing state change: no event.
-- KEYS: 1 ix, 2 resident index (identity -> resident), 3 resident of interaction,
--       then 3 keys per candidate resident of ARGV, in that order: identities, consent, history.
-- ARGV: 1 ix_id, 2 consent (1|0), 3 channel of the contact, 4 history cap, 5 n identities,
--       6..5+n the identities, then for each the resident id the caller read ('' none), then
--       the candidate resident ids: those read, and last a fresh id for a new resident.
-- Returns {resident id ('' not recognised), residents merged into it}. An interaction already
-- in a history returns its resident unchanged (a channel delivering a contact twice).
-- STALE: an identity changed hands since the caller read the index (read again and retry).
local ix_id, consent, via = ARGV[1], ARGV[2] == '1', ARGV[3]
local cap, n = num(ARGV[4]), num(ARGV[5])
local created = redis.call('HGET', KEYS[1], 'created_ms')
if not created then return fail('NOTFOUND', ix_id) end
local prior = redis.call('HGET', KEYS[3], ix_id)
if prior then return {prior, 0} end

local base = {}   -- candidate resident id -> index of the key before its three keys
local first = 6 + 2 * n
local fresh = ARGV[#ARGV]
for j = first, #ARGV do base[ARGV[j]] = 3 + (j - first) * 3 end
local function key(rid, which) return KEYS[base[rid] + which] end  -- 1 ids, 2 consent, 3 hist

local idents, known, seen = {}, {}, {}
for i = 1, n do
  idents[i] = ARGV[5 + i]
  local read = ARGV[5 + n + i]
  if (redis.call('HGET', KEYS[2], idents[i]) or '') ~= read then
    return fail('STALE', 'identity changed hands')
  end
  if read ~= '' and not seen[read] then
    if not base[read] then return fail('STALE', 'resident keys missing') end
    seen[read] = true
    known[#known + 1] = read
  end
end

local function remember(rid)
  local hist = key(rid, 3)
  redis.call('ZADD', hist, num(created), ix_id)
  redis.call('HSET', KEYS[3], ix_id, rid)
  local over = redis.call('ZCARD', hist) - cap
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', hist, 0, over - 1)) do
      redis.call('HDEL', KEYS[3], old)
    end
    redis.call('ZREMRANGEBYRANK', hist, 0, over - 1)
  end
end

if not consent then
  local rid = known[1]
  if not rid then return {'', 0} end
  remember(rid)
  return {rid, 0}
end

local now = now_ms()
local survivor = known[1]
if not survivor then
  survivor = fresh
  if redis.call('EXISTS', key(fresh, 2)) == 1 then return fail('STALE', 'resident id taken') end
  redis.call('HSET', key(fresh, 2), 'consent', 1, 'since_ms', now, 'via', via)
else
  local best = num(redis.call('HGET', key(survivor, 2), 'since_ms'))
  for i = 2, #known do
    local since = num(redis.call('HGET', key(known[i], 2), 'since_ms'))
    if since < best then survivor, best = known[i], since end
  end
end

local merged = 0
for _, rid in ipairs(known) do
  if rid ~= survivor then
    for _, ident in ipairs(redis.call('SMEMBERS', key(rid, 1))) do
      redis.call('SADD', key(survivor, 1), ident)
      redis.call('HSET', KEYS[2], ident, survivor)
    end
    local hist = redis.call('ZRANGE', key(rid, 3), 0, -1, 'WITHSCORES')
    for i = 1, #hist, 2 do
      redis.call('ZADD', key(survivor, 3), hist[i + 1], hist[i])
      redis.call('HSET', KEYS[3], hist[i], survivor)
    end
    redis.call('DEL', key(rid, 1), key(rid, 2), key(rid, 3))
    merged = merged + 1
  end
end
for i = 1, n do
  redis.call('SADD', key(survivor, 1), idents[i])
  redis.call('HSET', KEYS[2], idents[i], survivor)
end
redis.call('HSET', key(survivor, 2), 'consent', 1, 'renewed_ms', now)
remember(survivor)
return {survivor, merged}
