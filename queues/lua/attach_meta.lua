-- attach_meta: add facts a channel learnt after the contact began (a location shared in an open
-- Telegram chat, an address) to the interaction's meta, for the agent. Not a state change: no
-- event. An ended interaction is left as it was.
-- KEYS: 1 ix
-- ARGV: 1 JSON object of fields to set in meta
-- Returns 1 when attached, 0 when the interaction is unknown or ended.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' or state == 'abandoned' or state == 'timeout'
    or state == 'deflected' then
  return 0
end
local ok, meta = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'meta') or '{}')
if not ok or type(meta) ~= 'table' then meta = {} end
for k, v in pairs(cjson.decode(ARGV[1])) do meta[k] = v end
redis.call('HSET', KEYS[1], 'meta', cjson.encode(meta))
return 1
