-- kb_answer: the agent answered the resident from a knowledge card (KBANSWER). Allowed while the
-- agent holds the interaction, connected or in wrap-up; the card is kept on the interaction
-- (kb_card, kb_card_ms, kb_agent) and a later mark replaces it. The event carries what the
-- statistics need to count a resolution from the knowledge base without reading the hash:
-- `during` (connected|wrapup), `transfers` so far, and `first` (1 = no card was marked before).
-- KEYS: 1 ix, 2 events
-- ARGV: 1 ix_id, 2 agent_id, 3 card id, 4 events_maxlen
-- Returns {now, first, state}.
local ix_id, agent_id, card = ARGV[1], ARGV[2], ARGV[3]
local ix = hmget(KEYS[1], {'state', 'agent', 'queue', 'channel', 'transfers', 'kb_card'})
if not ix.state then return fail('NOTFOUND', 'no interaction ' .. ix_id) end
if ix.state ~= 'connected' and ix.state ~= 'wrapup' then
  return fail('STATE', 'interaction is ' .. tostring(ix.state))
end
if ix.agent ~= agent_id then return fail('FORBIDDEN', 'interaction is with another agent') end
if card == nil or card == '' then return fail('STATE', 'no card given') end
local now = now_ms()
local first = (ix.kb_card == nil or ix.kb_card == '') and 1 or 0
redis.call('HSET', KEYS[1], 'kb_card', card, 'kb_card_ms', now, 'kb_agent', agent_id)
emit(KEYS[2], ARGV[4], {'ev', 'KBANSWER', 't', now, 'queue', ix.queue, 'ix', ix_id,
  'agent', agent_id, 'channel', ix.channel, 'card', card, 'during', ix.state,
  'transfers', num(ix.transfers), 'first', first})
return {now, first, ix.state}
