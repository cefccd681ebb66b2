"""Every Redis key cityline uses, in one place, with its type and lifetime.

All keys share one configurable prefix (default `cl:`). For Redis Cluster, choose a prefix with a
hash tag such as `{cl}:` so that every key a script touches lives in one slot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "cl:"

    # STREAM: every state change, appended by the Lua script that makes it. Trimmed by length
    # (`redis.events_maxlen`); statistics keep their own aggregates so trimming loses no figure.
    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    # HASH per interaction: see router.models.Interaction for the fields. Lives forever (small);
    # `cityline` never deletes an interaction, because reference numbers must stay resolvable.
    def ix(self, ix_id: str) -> str:
        return f"{self.prefix}ix:{ix_id}"

    # LIST per interaction: the conversation (JSON entries), appended by message.lua.
    def messages(self, ix_id: str) -> str:
        return f"{self.prefix}msgs:{ix_id}"

    # ZSET per bucket of waiting interactions, scored by position time (enqueued_ms). A bucket is
    # every waiting interaction of one queue with the same channel, priority, required skills and
    # target agent, so its head is the best candidate for it and the dispatcher looks only at
    # heads: decision cost grows with the number of buckets, not with the number waiting.
    def bucket(self, bucket_id: str) -> str:
        return f"{self.prefix}b:{bucket_id}"

    # HASH per bucket: queue, channel, priority, skills (JSON), target_agent, queue_priority.
    # Written once when the bucket is first used; never changes (the id is a digest of it).
    def bucket_meta(self, bucket_id: str) -> str:
        return f"{self.prefix}bm:{bucket_id}"

    # SET of bucket ids that currently hold at least one waiting interaction.
    @property
    def active_buckets(self) -> str:
        return f"{self.prefix}buckets"

    # SET per queue of every bucket id ever used by it (for live "waiting" per queue).
    def queue_buckets(self, queue: str) -> str:
        return f"{self.prefix}qb:{queue}"

    # HASH per agent: profile (skills JSON, cap:<channel>, line, endpoint, blending flags) and
    # state (state, reason, state_since, idle_since, load:<channel>, misses).
    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}agent:{agent_id}"

    # SET per agent of interaction ids it holds (offered, connected or in wrap-up).
    def agent_work(self, agent_id: str) -> str:
        return f"{self.prefix}aw:{agent_id}"

    # SET of every agent id that has ever logged in (for the agent grid and statistics).
    @property
    def agents(self) -> str:
        return f"{self.prefix}agents"

    # ZSET of agents that are ready and have spare capacity on some channel, scored by
    # idle_since (ms): the dispatcher's only source of candidate agents.
    @property
    def available(self) -> str:
        return f"{self.prefix}avail"

    # STRING with a TTL: the name of the dispatcher that plans matching rounds now (see
    # dispatch_lease.lua). Expires within a second when its holder stops.
    @property
    def dispatch_lease(self) -> str:
        return f"{self.prefix}lease"

    # ZSET: interaction id -> offer deadline (ms). Offers past it become RINGNOANSWER.
    @property
    def offers(self) -> str:
        return f"{self.prefix}offers"

    # ZSET: interaction id -> next moment something happens to it while waiting (escalation
    # step or max wait), in ms. Removed while offered, restored when it goes back to waiting.
    @property
    def due(self) -> str:
        return f"{self.prefix}due"

    # ZSET: interaction id -> end of its wrap-up time (ms).
    @property
    def wrapups(self) -> str:
        return f"{self.prefix}wrapups"

    # HASH: year -> last reference number sequence of that year.
    @property
    def ref_seq(self) -> str:
        return f"{self.prefix}refseq"

    # HASH: reference number -> interaction id.
    @property
    def ref_index(self) -> str:
        return f"{self.prefix}refs"

    # HASH: "<channel>:<external id>" (Asterisk uniqueid, Message-ID, webhook id) -> interaction
    # id, so an input delivered twice creates one interaction.
    @property
    def external_ids(self) -> str:
        return f"{self.prefix}ext"

    # --- statistics (router.stats) ---------------------------------------------------------

    # STRING: id of the last event folded into the aggregates (exactly-once cursor).
    @property
    def stats_cursor(self) -> str:
        return f"{self.prefix}st:cursor"

    # HASH per 15-minute interval and scope ("q:<queue>", "c:<channel>", "a:<agent>"):
    # counters and sums of that interval. Kept `stats.retention_days`.
    def stats_interval(self, interval_start_ms: int, scope: str) -> str:
        return f"{self.prefix}st:{interval_start_ms}:{scope}"

    # HASH per interaction the aggregator is following: what it must remember across batches
    # (answered already? transferred?) for first-answer and first-contact-resolution counts.
    # Deleted when the interaction ends; expires after 30 days of silence.
    def stats_ix(self, ix_id: str) -> str:
        return f"{self.prefix}st:ix:{ix_id}"

    # HASH per agent the aggregator is following: state and since when, to split ready/paused
    # time across the intervals it spans.
    def stats_agent(self, agent_id: str) -> str:
        return f"{self.prefix}st:ag:{agent_id}"

    # SET per day (YYYY-MM-DD, city time) of the interval hash keys written that day.
    def stats_day_index(self, day: str) -> str:
        return f"{self.prefix}st:day:{day}"

    # --- authentication (router.auth) ------------------------------------------------------

    # HASH per user: role, agent_id, password hash (argon2).
    def user(self, username: str) -> str:
        return f"{self.prefix}user:{username}"

    # SET of user names.
    @property
    def users(self) -> str:
        return f"{self.prefix}users"

    # HASH per API token, keyed by the token's SHA-256: user, created, label. The token itself
    # is shown once and never stored.
    def api_token(self, token_digest: str) -> str:
        return f"{self.prefix}tok:{token_digest}"

    # HASH per session id (random, 256 bits): user, csrf token. Expires with the session.
    def session(self, session_id: str) -> str:
        return f"{self.prefix}sess:{session_id}"

    # STRING counter per user of failed logins, expiring after the lockout window.
    def login_failures(self, username: str) -> str:
        return f"{self.prefix}lf:{username}"

    # --- what channel adapters remember between contacts (queues.channel_state) --------------
    # Every key below is scoped by the channel ("sms", "email", "chat", "telegram", "webform").

    # STRING per (channel, kind, id): a one-time claim (a gateway's message id, an e-mail's
    # Message-ID, a Telegram update id), expiring after the window in which duplicates arrive.
    def claim(self, channel: str, kind: str, item: str) -> str:
        return f"{self.prefix}cs:{channel}:{kind}:{item}"

    # STRING counter per (channel, key, window start): inbound contacts counted for rate limits,
    # expiring after two windows.
    def rate(self, channel: str, key: str, window: int) -> str:
        return f"{self.prefix}cs:{channel}:rate:{key}:{window}"

    # HASH per (channel, kind, key): a link from the channel's own conversation key (a number, a
    # chat id, a Message-ID, a reconnect-token digest) to an interaction, with a few fields.
    def link(self, channel: str, kind: str, key: str) -> str:
        return f"{self.prefix}cs:{channel}:link:{kind}:{key}"

    # SET per (channel, flag): contacts with that flag (e.g. sms opted out of messages).
    def flag(self, channel: str, flag: str) -> str:
        return f"{self.prefix}cs:{channel}:flag:{flag}"

    # HASH per (channel, group): the fragments of one message arriving in parts (index -> JSON,
    # `_total`); ZSET per channel of groups by the time they are taken as they are.
    def fragments(self, channel: str, group: str) -> str:
        return f"{self.prefix}cs:{channel}:frag:{group}"

    def fragments_due(self, channel: str) -> str:
        return f"{self.prefix}cs:{channel}:fragdue"

    # ZSET per channel of outbound job ids by due time (seconds); HASH per channel of job id ->
    # JSON job. A job stays until it was sent or failed for good, so a restart resumes it.
    def outbox_due(self, channel: str) -> str:
        return f"{self.prefix}cs:{channel}:outbox"

    def outbox_jobs(self, channel: str) -> str:
        return f"{self.prefix}cs:{channel}:jobs"

    # HASH per interaction: message index (or "ack") -> JSON delivery record of what cityline
    # sent the resident (status, tries, last error), shown to the agent next to the message.
    def deliveries(self, ix_id: str) -> str:
        return f"{self.prefix}dlv:{ix_id}"

    # --- residents recognised across channels, with their consent (queues.residents) --------
    # An identity is a canonical contact (router.identity): "tel:+48600100200",
    # "mailto:jan@example.pl", "telegram:123". Only residents who consented are kept; withdrawing
    # consent removes every identity and history record (the interactions themselves stay).

    # HASH: identity -> resident id, for every identity of a resident who consented.
    @property
    def resident_index(self) -> str:
        return f"{self.prefix}rid"

    # HASH: interaction id -> resident id, for every interaction in some resident's history (so
    # the agent holding it finds the resident; a merge or a withdrawal rewrites it in one step).
    @property
    def resident_of_ix(self) -> str:
        return f"{self.prefix}rix"

    # SET per resident of its identities.
    def resident_ids(self, resident_id: str) -> str:
        return f"{self.prefix}res:{resident_id}:ids"

    # HASH per resident: consent (1, or 0 once withdrawn), since_ms, via (channel of the first
    # consent), renewed_ms (last contact that gave it), withdrawn_ms. Kept after a withdrawal as
    # the record of it; holds nothing that identifies the person.
    def resident_consent(self, resident_id: str) -> str:
        return f"{self.prefix}res:{resident_id}:consent"

    # ZSET per resident of its interaction ids scored by created_ms, the newest few hundred
    # (`queues.residents.HISTORY_CAP`).
    def resident_history(self, resident_id: str) -> str:
        return f"{self.prefix}res:{resident_id}:hist"

    # --- the directory: admin changes to agents and queues over the YAML (router.directory) ---
    # The configuration file stays the base; these hold what admins changed since, validated
    # against the whole effective configuration before they are written (queues.directory).

    # HASH: agent id -> JSON of its whole AgentConfig as an admin set it (overrides the file's
    # definition of that id, or adds an agent the file does not have).
    @property
    def directory_agents(self) -> str:
        return f"{self.prefix}dir:agents"

    # HASH: queue name -> JSON of its whole QueueConfig as an admin set it.
    @property
    def directory_queues(self) -> str:
        return f"{self.prefix}dir:queues"

    # SET: agent ids of the file that an admin removed.
    @property
    def directory_removed_agents(self) -> str:
        return f"{self.prefix}dir:agents:removed"

    # SET: queue names of the file that an admin removed.
    @property
    def directory_removed_queues(self) -> str:
        return f"{self.prefix}dir:queues:removed"

    # STRING counter: bumped by every directory change; every process polls it and applies the
    # change when it moves (router.directory.DirectoryWatcher).
    @property
    def directory_version(self) -> str:
        return f"{self.prefix}dir:version"

    # --- cases: service requests made of intervention reports (queues.cases) -----------------
    # A case lives forever (its number must stay resolvable, like a reference number); only the
    # indexes of open cases (unit queue, geo index) shrink when it is closed.

    # HASH per case: number, category, unit, status, assignee, description, address, lat, lon,
    # photos (JSON), created_ms, due_ms, updated_ms, closed_ms, ix (the interaction it was made
    # from), channel, language, reports (count of linked reports), duplicate_of.
    def case(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}"

    # LIST per case: its status history, oldest first (JSON: status, note, public_note, by, t,
    # unit), appended by every case_*.lua script.
    def case_history(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}:hist"

    # HASH per case: subscriber key ("ix:<id>" or "contact:<contact>") -> JSON of who is told of
    # its outcome and how (ix, via, to, language, ref): the reporter and linked duplicates.
    def case_subscribers(self, case_id: str) -> str:
        return f"{self.prefix}case:{case_id}:subs"

    # ZSET per unit of its open cases (not completed/rejected/duplicate), scored by due_ms: the
    # second line's work queue, most urgent first.
    def unit_cases(self, unit: str) -> str:
        return f"{self.prefix}unitcases:{unit}"

    # GEO (ZSET) per category of the open cases that have a location: GEOSEARCH finds likely
    # duplicates of a new report. A case leaves it when it is closed or moved.
    def case_geo(self, category: str) -> str:
        return f"{self.prefix}casegeo:{category}"

    # HASH: year -> last case number sequence of that year.
    @property
    def case_seq(self) -> str:
        return f"{self.prefix}caseseq"

    # HASH: case number (Z-2026-000123) -> case id.
    @property
    def case_numbers(self) -> str:
        return f"{self.prefix}casenums"

    # ZSET: case id -> created_ms, every case forever (like the number map): Open311's list of a
    # period and the city's reports read ranges of it instead of scanning every number. Written
    # by case_create.lua; cases made before it existed are added by `CaseStore.index_created`.
    @property
    def case_by_created(self) -> str:
        return f"{self.prefix}cases:by_created"
