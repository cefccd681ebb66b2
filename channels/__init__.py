"""Channel adapters: one subpackage per way a resident reaches the city.

`voice` (Asterisk AMI + FastAGI IVR), `sms`, `email`, `chat` (web), `telegram`, `webform`. Each
lives in `channels/<name>/` (`adapter.py`, `inbound.py`, `outbound.py`, `errors.py`) and depends
on `router` only (the intake/outbound API and the models), never on `queues` or Redis.

The contract every adapter satisfies (a small structural Protocol, no base class required):

- `name: str`, `channel: str` — the channel's name as in `router.models.Channel`, also its
  config block's key under `channels:`.
- `async start() -> None` — open listeners and connections (an SMTP server, the AMI link, a
  gateway session). A failed start cleans up whatever it had opened before raising.
- `async stop() -> None` — stop taking new input, finish or hand back what is in flight, close.
  Safe to call after a failed or partial start, and twice.
- `async handle_event(event, interaction) -> None` — act on the router's events of this
  channel (`router.event_feed`, one consumer group per channel, at least once): ring the agent
  for an OFFER, deliver an agent's MESSAGE to the resident, hang up after COMPLETEAGENT...
  Must be idempotent. Transport errors are the adapter's own `errors.py` classes, never leaked
  library exceptions; raising makes the feed retry the event later.
- optional `setup_routes(app)` — the adapter's HTTP routes (webhooks, resident pages), added to
  the one aiohttp app before it starts.

Inbound input is turned into the same `Interaction` for every channel and handed to the router's
intake; the channel answers its own protocol (an SMTP code, an HTTP status) and nothing else.
Adapters are constructed and started by the composition root (`router/main.py`), which is the
only place that knows which channels a deployment runs; adding a channel is one new subpackage
plus its config block.
"""
