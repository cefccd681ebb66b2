-- resident_withdraw: the resident withdrew consent to be recognised across channels. Every
-- identity and history record of the resident goes (the interactions themselves stay, as every
-- interaction does); the consent hash stays as the record of the withdrawal, holding nothing
-- that identifies the person. Not a routing state change: no event.
-- KEYS: 1 resident index (identity -> resident), 2 resident of interaction, 3 identities,
--       4 consent, 5 history
-- ARGV: 1 resident id
-- Returns {identities removed, interactions unlinked, withdrawn_ms}; for a resident who had
-- already withdrawn, {0, 0, withdrawn_ms} of that first withdrawal. NOTFOUND: no such resident.
local rid = ARGV[1]
local c = hmget(KEYS[4], {'consent', 'withdrawn_ms'})
if not c.consent then return fail('NOTFOUND', rid) end
if c.consent ~= '1' then return {0, 0, num(c.withdrawn_ms)} end
local now = now_ms()
local idents, unlinked = 0, 0
for _, ident in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('HGET', KEYS[1], ident) == rid then
    redis.call('HDEL', KEYS[1], ident)
  end
  idents = idents + 1
end
for _, ix_id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  if redis.call('HGET', KEYS[2], ix_id) == rid then
    redis.call('HDEL', KEYS[2], ix_id)
  end
  unlinked = unlinked + 1
end
redis.call('DEL', KEYS[3], KEYS[5])
redis.call('HSET', KEYS[4], 'consent', 0, 'withdrawn_ms', now)
redis.call('HDEL', KEYS[4], 'renewed_ms')
return {idents, unlinked, now}
