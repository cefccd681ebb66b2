// The agent desktop: applies the agent's own view from /agent/stream (Server-Sent Events) to the
// page, runs the countdowns, reads conversations and sends every action to the JSON API with
// the session's CSRF token. Data only ever goes into the page through textContent, value and
// class names: never HTML (a <script> a resident types is shown, never run).
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("desktop-config").textContent);
  const { say, connect } = window.cityline;
  const api = (method, path, body) => window.cityline.api(config.api, method, path, body);
  const agentPath = "/agents/" + encodeURIComponent(config.agent);
  const $ = (id) => document.getElementById(id);
  const queues = new Map(config.queues.map((q) => [q.name, q]));
  const SHOWN = ["ready", "busy", "wrapup", "paused", "offline"];
  const baseTitle = document.title;

  let view = null;
  let offset = 0; // server clock - browser clock, ms
  let selected = config.focus || "";
  let justAccepted = "";
  const offers = new Map(); // ix id -> {card, item}
  const work = new Map(); // ix id -> {tab, panel, item, msgSig, seen, history}

  // --- small helpers -----------------------------------------------------------------------------
  function now() { return Date.now() + offset; }

  function duration(ms) {
    const total = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + s : m + ":" + s;
  }

  function setText(el, value) {
    const text = value === undefined || value === null ? "" : String(value);
    if (el.textContent !== text) el.textContent = text;
  }

  function fill(root, fields) {
    for (const [name, value] of Object.entries(fields)) {
      root.querySelectorAll('[data-f="' + name + '"]').forEach((el) => setText(el, value));
      root.querySelectorAll('[data-row="' + name + '"]').forEach((el) => {
        el.hidden = value === "" || value === null || value === undefined;
      });
    }
  }

  async function act(button, what, fn) {
    if (button) button.disabled = true;
    try {
      await fn();
      say("", false);
      await refresh();
    } catch (e) {
      say(what + ": " + e.message, true);
      await refresh();
    } finally {
      if (button) button.disabled = false;
    }
  }

  function ixPath(id) {
    return agentPath + "/interactions/" + encodeURIComponent(id);
  }

  // --- the state bar --------------------------------------------------------------------------------
  function applyAgent(agent) {
    const badge = $("state-badge");
    SHOWN.forEach((s) => badge.classList.toggle("sb-" + s, s === agent.shown));
    setText(badge, agent.shown === "paused" ? "not ready" : agent.shown);
    setText($("state-reason"), agent.reason_label);
    setText($("go-ready"), agent.state === "offline" ? "Sign in ready" : "Ready");
    setText($("go-pause"), agent.state === "offline" ? "Sign in not ready" : "Not ready");
    $("go-ready").disabled = agent.state === "ready";
    $("go-offline").disabled = agent.state === "offline";
    const parts = [];
    for (const [channel, cap] of Object.entries(agent.capacity)) {
      const load = agent.load[channel] || 0;
      if (load) parts.push(channel + " " + load + "/" + cap);
    }
    setText($("load"), parts.length ? "holding " + parts.join(", ") : "");
  }

  async function setState(button, target) {
    const agent = view.agent;
    const reason = $("reason").value || null;
    await act(button, "Could not change your state", async () => {
      if (agent.state === "offline") {
        if (target === "offline") return;
        await api("POST", agentPath + "/login", {
          ready: target === "ready", reason: target === "ready" ? null : reason,
        });
      } else {
        await api("PUT", agentPath + "/state", {
          state: target, reason: target === "not_ready" ? reason : null,
        });
      }
    });
  }

  $("go-ready").addEventListener("click", (e) => setState(e.currentTarget, "ready"));
  $("go-pause").addEventListener("click", (e) => setState(e.currentTarget, "not_ready"));
  $("go-offline").addEventListener("click", (e) => setState(e.currentTarget, "offline"));

  // --- history of the resident (when they consented) ----------------------------------------------
  async function loadHistory(id, box) {
    if (!config.history_url) return;
    let data;
    try {
      const url = config.history_url.replace("{ix_id}", encodeURIComponent(id));
      data = await api("GET", url.slice(config.api.length));
    } catch (e) {
      return; // no history endpoint, not recognised, or no longer ours: show nothing
    }
    const list = box.querySelector("ul");
    list.replaceChildren();
    for (const h of (data && data.interactions) || []) {
      const li = document.createElement("li");
      const when = h.created_ms ? new Date(h.created_ms).toLocaleString() : "";
      li.textContent = [h.ref, h.channel, when, h.state, h.subject].filter(Boolean).join(" · ");
      list.appendChild(li);
    }
    box.hidden = list.children.length === 0;
  }

  // --- offers -------------------------------------------------------------------------------------
  function offerFields(item) {
    return {
      channel: item.channel,
      queue_label: item.queue_label,
      ref: item.ref,
      language: item.language,
      resident: item.resident,
      resident_name: item.resident_name,
      topic: item.topic,
      subject: item.subject,
      ivr_path: item.channel === "voice" ? item.ivr_path : "",
      transfer_note: item.transfer_note,
    };
  }

  function applyOffers(list) {
    const box = $("offers");
    const seen = new Set();
    for (const item of list) {
      seen.add(item.id);
      let entry = offers.get(item.id);
      if (!entry) {
        const card = $("offer-template").content.firstElementChild.cloneNode(true);
        card.dataset.ix = item.id;
        card.querySelector(".accept").addEventListener("click", (e) => {
          justAccepted = item.id;
          act(e.currentTarget, "Could not accept", () =>
            api("POST", ixPath(item.id) + "/accept"));
        });
        card.querySelector(".reject").addEventListener("click", (e) =>
          act(e.currentTarget, "Could not reject", () =>
            api("POST", ixPath(item.id) + "/reject")));
        box.appendChild(card);
        entry = { card: card, item: item };
        offers.set(item.id, entry);
        loadHistory(item.id, card.querySelector(".history"));
      }
      entry.item = item;
      fill(entry.card, offerFields(item));
    }
    for (const [id, entry] of offers) {
      if (!seen.has(id)) {
        entry.card.remove();
        offers.delete(id);
      }
    }
  }

  // --- interactions held --------------------------------------------------------------------------
  function transferTargets(select, item) {
    const groups = [
      ["Queues", config.queues
        .filter((q) => q.channel === item.channel && q.name !== item.queue)
        .map((q) => ["queue:" + q.name, q.label])],
      ["Second-line experts", config.experts.map((a) => ["agent:" + a.id, a.name])],
    ];
    const wanted = groups.map((g) => g[1].map((o) => o[0]).join(",")).join(";");
    if (select.dataset.targets === wanted) return; // keep the agent's pick
    select.dataset.targets = wanted;
    select.replaceChildren();
    let count = 0;
    for (const [title, options] of groups) {
      if (!options.length) continue;
      const group = document.createElement("optgroup");
      group.label = title;
      for (const [value, text] of options) {
        const option = document.createElement("option");
        option.value = value;
        option.textContent = text;
        group.appendChild(option);
        count++;
      }
      select.appendChild(group);
    }
    select.disabled = count === 0;
    select.closest("form").querySelector(".transfer-go").disabled = count === 0;
  }

  function renderMessages(entry, data) {
    const list = entry.panel.querySelector(".messages");
    const template = $("message-template");
    const items = [];
    for (const m of data.messages) {
      const li = template.content.firstElementChild.cloneNode(true);
      const mine = m.sender === "agent";
      const city = m.sender === "system";  // cityline's own: a case's number and status link
      li.classList.add(mine ? "msg-agent" : city ? "msg-system" : "msg-resident");
      setText(li.querySelector(".msg-who"), mine
        ? (m.agent === config.agent ? "You" : "Agent " + m.agent) : city ? "City (automatic)"
        : "Resident");
      setText(li.querySelector(".msg-time"), new Date(m.time_ms).toLocaleTimeString());
      li.querySelector(".msg-text").textContent = m.text;
      const d = li.querySelector(".delivery");
      if (m.delivery) {
        d.textContent = m.delivery.status + (m.delivery.error ? " (" + m.delivery.error + ")" : "");
        d.classList.add("dl-" + m.delivery.status.replace(/[^a-z_]/g, ""));
      } else {
        d.remove();
      }
      items.push(li);
    }
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
    list.replaceChildren(...items);
    if (stick || !entry.scrolled) {
      list.scrollTop = list.scrollHeight;
      entry.scrolled = true;
    }
    const ack = entry.panel.querySelector(".ack");
    if (data.acknowledgement) {
      ack.textContent = "Acknowledgement with the reference: " + data.acknowledgement.status;
      ack.hidden = false;
    } else {
      ack.hidden = true;
    }
  }

  async function loadMessages(entry) {
    const sig = entry.item.msg_sig;
    // only the latest read is shown: an earlier one answering late would put back a
    // conversation without its last message (and nothing would read it again)
    const asked = ++entry.asked;
    try {
      const data = await api("GET", "/interactions/" + encodeURIComponent(entry.item.id) +
        "/messages");
      if (entry.asked !== asked) return;
      renderMessages(entry, data);
      entry.msgSig = sig;
    } catch (e) {
      if (e.status !== 403 && e.status !== 404) say("Could not read the conversation: " + e.message, true);
    }
  }

  function makeEntry(item) {
    const tab = $("tab-template").content.firstElementChild.cloneNode(true);
    const panel = $("panel-template").content.firstElementChild.cloneNode(true);
    tab.dataset.ix = item.id;
    panel.dataset.ix = item.id;
    panel.dataset.channel = item.channel;
    const entry = { tab: tab, panel: panel, item: item, msgSig: "", seen: 0, scrolled: false,
      asked: 0 };
    tab.querySelector(".tab").addEventListener("click", () => select(item.id));
    const id = item.id;
    // a queue without wrap-up time takes the outcome with the ending (the .outcome fields)
    const ending = () => ({
      disposition: panel.querySelector(".end-disposition").value,
      note: panel.querySelector(".end-note").value.trim(),
    });
    panel.querySelector(".hangup").addEventListener("click", (e) =>
      act(e.currentTarget, "Could not hang up", () =>
        api("POST", ixPath(id) + "/complete", ending())));
    panel.querySelector(".complete").addEventListener("click", (e) =>
      act(e.currentTarget, "Could not end the conversation", () =>
        api("POST", ixPath(id) + "/complete", ending())));
    const reply = panel.querySelector(".reply");
    const textarea = reply.querySelector("textarea");
    reply.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = textarea.value.trim();
      if (!text) return;
      const button = reply.querySelector(".send");
      button.disabled = true;
      try {
        await api("POST", ixPath(id) + "/messages", { text: text });
        textarea.value = "";
        say("", false);
        await loadMessages(entry);
      } catch (err) {
        say("Could not send: " + err.message, true);
      } finally {
        button.disabled = false;
        textarea.focus();
      }
    });
    textarea.addEventListener("keydown", (e) => {
      const quick = item.channel !== "email" && item.channel !== "webform";
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey || (quick && !e.shiftKey))) {
        e.preventDefault();
        reply.requestSubmit();
      }
    });
    const transfer = panel.querySelector(".transfer");
    transfer.addEventListener("submit", (e) => {
      e.preventDefault();
      const target = transfer.querySelector(".transfer-target").value;
      if (!target) return;
      const kind = target.slice(0, target.indexOf(":"));
      const name = target.slice(target.indexOf(":") + 1);
      const body = { note: transfer.querySelector(".transfer-note").value.trim() };
      body[kind] = name;
      act(transfer.querySelector(".transfer-go"), "Could not transfer", async () => {
        await api("POST", ixPath(id) + "/transfer", body);
        say("Transferred " + entry.item.ref, false);
      });
    });
    const wrapup = panel.querySelector(".wrapup");
    wrapup.addEventListener("submit", (e) => {
      e.preventDefault();
      act(wrapup.querySelector(".close-ix"), "Could not close", () =>
        api("POST", ixPath(id) + "/wrapup-end", {
          disposition: wrapup.querySelector(".disposition").value,
          note: wrapup.querySelector(".wrapup-note").value.trim(),
        }));
    });
    $("work-list").appendChild(tab);
    $("panels").appendChild(panel);
    loadHistory(id, panel.querySelector(".history"));
    return entry;
  }

  function applyEntry(entry, item) {
    const before = entry.item;
    entry.item = item;
    const voice = item.channel === "voice";
    const connected = item.state === "connected";
    const wrapping = item.state === "wrapup";
    fill(entry.panel, {
      channel: item.channel,
      ref: item.ref,
      queue_label: item.queue_label,
      state: wrapping ? "wrap-up" : (voice ? "on the call" : "in conversation"),
      resident_caption: voice ? "Caller number" : "Resident",
      resident: item.resident,
      resident_name: item.resident_name,
      language: item.language,
      topic: item.topic,
      ivr_path: voice ? item.ivr_path : "",
      subject: item.subject,
      transfer_note: item.transfer_note,
      kb_card: item.kb_card,
      case: item.case || "",
      body: item.body,
    });
    entry.panel.querySelector(".first-message").hidden = !item.body;
    fill(entry.tab, {
      channel: item.channel,
      ref: item.ref,
      who: item.resident_name || item.resident,
      state: wrapping ? "wrap-up" : "",
    });
    entry.tab.classList.toggle("tab-wrapup", wrapping);
    const conversation = entry.panel.querySelector(".conversation");
    conversation.hidden = !item.text;
    entry.panel.querySelector(".reply").hidden = !connected;
    entry.panel.querySelector(".hangup").hidden = !(voice && connected);
    entry.panel.querySelector(".complete").hidden = !(!voice && connected);
    entry.panel.querySelector(".ix-actions").hidden = !connected;
    entry.panel.querySelector(".outcome").hidden = !(connected && !item.has_wrapup);
    entry.panel.querySelector(".wrapup").hidden = !wrapping;
    transferTargets(entry.panel.querySelector(".transfer-target"), item);
    if (item.text && (entry.msgSig !== item.msg_sig || before.state !== item.state)) {
      loadMessages(entry);
    }
    if (selected === item.id) entry.seen = item.messages;
  }

  function applyWork(list) {
    const ids = new Set(list.map((item) => item.id));
    const seen = new Set();
    for (const item of list) {
      seen.add(item.id);
      let entry = work.get(item.id);
      if (!entry) {
        entry = makeEntry(item);
        work.set(item.id, entry);
        if (!ids.has(selected) || justAccepted === item.id) selected = item.id;
        if (justAccepted === item.id) justAccepted = "";
      }
      applyEntry(entry, item);
    }
    for (const [id, entry] of work) {
      if (!seen.has(id)) {
        entry.tab.remove();
        entry.panel.remove();
        work.delete(id);
      }
    }
    if (!work.has(selected)) selected = work.size ? work.keys().next().value : "";
    select(selected);
    setText($("work-count"), work.size ? "(" + work.size + ")" : "");
    $("work-empty").hidden = work.size > 0;
  }

  function select(id) {
    selected = id;
    for (const [key, entry] of work) {
      const on = key === id;
      entry.panel.hidden = !on;
      entry.tab.querySelector(".tab").setAttribute("aria-pressed", on ? "true" : "false");
      if (on) entry.seen = entry.item.messages;
      const unread = entry.item.messages - entry.seen;
      const badge = entry.tab.querySelector(".unread");
      badge.hidden = !(unread > 0);
      setText(badge, unread > 0 ? String(unread) : "");
    }
    if (kb && $("kb-form")) {
      kbFollowLanguage();
      kbUsable();
    }
  }

  // --- countdowns -----------------------------------------------------------------------------------
  function tick() {
    if (!view) return;
    const t = now();
    const agent = view.agent;
    setText($("state-time"), agent.since_ms ? duration(t - agent.since_ms) : "-");
    for (const { card, item } of offers.values()) {
      const left = item.deadline_ms - t;
      const span = Math.max(1, item.deadline_ms - item.offered_ms);
      setText(card.querySelector('[data-f="countdown"]'), Math.max(0, Math.ceil(left / 1000)));
      card.querySelector("progress").value = Math.max(0, Math.min(1, left / span));
      card.classList.toggle("offer-late", left < 5000);
      setText(card.querySelector('[data-f="waited"]'),
        duration(t - (item.created_ms || item.entered_ms)));
    }
    let wrapLeft = null;
    for (const entry of work.values()) {
      const item = entry.item;
      let clock = "";
      if (item.state === "connected" && item.connected_ms) {
        clock = duration(t - item.connected_ms);
      } else if (item.state === "wrapup" && item.wrapup_until_ms) {
        const left = item.wrapup_until_ms - t;
        clock = "wrap-up " + duration(left);
        setText(entry.panel.querySelector('[data-f="wrapup_left"]'), duration(left));
        wrapLeft = wrapLeft === null ? left : Math.min(wrapLeft, left);
      }
      setText(entry.panel.querySelector('[data-f="clock"]'), clock);
    }
    $("wrapup-info").hidden = wrapLeft === null;
    if (wrapLeft !== null) setText($("wrapup-countdown"), duration(wrapLeft));
    const n = offers.size;
    const title = n ? "(" + n + ") New contact · " + baseTitle : baseTitle;
    if (document.title !== title) document.title = title;
  }

  // --- the knowledge base: search cards, open one, use its answer ---------------------------------
  // Results and cards are text (textContent); a link's address is set only when it is https.
  const kb = config.knowledge;
  let kbCard = null; // the card shown: the API's CardView
  let kbLangFor = ""; // the interaction whose language the language choice follows

  function kbFollowLanguage() {
    const entry = work.get(selected);
    if (!kb || !entry || kbLangFor === entry.item.id) return;
    kbLangFor = entry.item.id;
    if (kb.languages.includes(entry.item.language)) $("kb-lang").value = entry.item.language;
  }

  function kbParams(extra) {
    const params = new URLSearchParams(extra);
    params.set("lang", $("kb-lang").value);
    return params.toString();
  }

  function kbHit(hit) {
    const li = $("kb-hit-template").content.firstElementChild.cloneNode(true);
    const button = li.querySelector(".kb-hit");
    button.dataset.card = hit.id;
    setText(li.querySelector(".kb-title"), hit.title);
    setText(li.querySelector(".kb-topic"), hit.topic_label);
    setText(li.querySelector(".kb-snippet"), hit.snippet);
    button.addEventListener("click", () => kbOpen(hit.id));
    return li;
  }

  async function kbSearch() {
    kbFollowLanguage();
    const q = $("kb-q").value.trim();
    const params = { q: q };
    if ($("kb-topic").value) params.topic = $("kb-topic").value;
    const button = $("kb-search");
    button.disabled = true;
    try {
      const data = await api("GET", "/knowledge?" + kbParams(params));
      $("kb-results").replaceChildren(...data.cards.map(kbHit));
      let status = data.total ? data.total + (data.total === 1 ? " card" : " cards") : "No card matches.";
      if (data.total > data.cards.length) status += " (the best " + data.cards.length + " shown)";
      if (data.fallback) status += " Nothing in this language: found in another.";
      setText($("kb-status"), status);
    } catch (e) {
      say("Could not search the knowledge base: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function kbUsable() {
    const entry = work.get(selected);
    const item = entry && entry.item;
    const ok = !!(kbCard && item && (item.state === "connected" || item.state === "wrapup"));
    $("kb-use").disabled = !ok;
    $("kb-use").title = ok ? "" : "Open an interaction you are working on first";
  }

  async function kbOpen(id) {
    try {
      kbCard = await api("GET", "/knowledge/" + encodeURIComponent(id) + "?" + kbParams({}));
    } catch (e) {
      say("Could not open the card: " + e.message, true);
      return;
    }
    setText($("kb-card-title"), kbCard.title);
    setText($("kb-card-topic"), kbCard.topic_label);
    setText($("kb-card-unit"), kbCard.unit ? "· unit: " + kbCard.unit : "");
    const paragraphs = kbCard.answer.split(/\n\s*\n/).map((text) => {
      const p = document.createElement("p");
      p.textContent = text.trim();
      return p;
    });
    $("kb-card-answer").replaceChildren(...paragraphs);
    const links = [];
    for (const link of kbCard.links) {
      if (!/^https:\/\//.test(link.url)) continue;
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = link.url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.textContent = link.label;
      li.appendChild(a);
      links.push(li);
    }
    $("kb-card-links").replaceChildren(...links);
    $("kb-card").hidden = false;
    kbUsable();
  }

  async function kbUse() {
    const entry = work.get(selected);
    if (!kbCard || !entry) return;
    const item = entry.item;
    const card = kbCard;
    const textarea = entry.panel.querySelector(".reply textarea");
    // text channels: the answer goes into the reply box, for the agent to adapt and send
    if (item.text && item.state === "connected" && textarea) {
      const draft = textarea.value.trim();
      textarea.value = draft ? draft + "\n\n" + card.answer : card.answer;
      textarea.focus();
    }
    await act($("kb-use"), "Could not record the answer", async () => {
      await api("POST", ixPath(item.id) + "/answered-from", { card_id: card.id });
    });
    if (!$("notice").classList.contains("error")) {
      say(item.ref + ": answered from the card " + card.id + " (" + card.title + ")", false);
    }
  }

  if (kb && $("kb-form")) {
    $("kb-form").addEventListener("submit", (e) => {
      e.preventDefault();
      kbSearch();
    });
    $("kb-lang").addEventListener("change", () => { kbLangFor = selected; });
    $("kb-use").addEventListener("click", kbUse);
    $("kb-close").addEventListener("click", () => {
      kbCard = null;
      $("kb-card").hidden = true;
    });
  }

  // --- applying a view ----------------------------------------------------------------------------
  const viewHooks = []; // other scripts' functions called with every view (desktop_cases.js)

  // Views come from two places: the stream's pushes, in order, and /agent/view.json read after
  // an action (refresh). The stream pushes only when the view changed from ITS last push, so the
  // page must never end on a view older than that push: a view.json answer read before the last
  // push but arriving after it (a loaded server or browser) would put the old view back - an
  // offer or a panel gone - and nothing would correct it until the next change. So every view
  // takes a ticket (a push when it arrives, a refresh when it is asked for): a push is always
  // applied, a refresh's answer only when no view with a later ticket is on the page (it may be
  // older than that one: the page keeps it, and the stream brings anything newer itself).
  let tickets = 0;
  let appliedTicket = 0; // the ticket of the view on the page

  function apply(next, ticket) {
    appliedTicket = ticket === undefined ? ++tickets : ticket;
    view = next;
    offset = next.now_ms - Date.now();
    applyAgent(next.agent);
    applyOffers(next.offers);
    applyWork(next.work);
    tick();
    for (const hook of viewHooks) hook(next);
  }

  async function refresh() {
    const ticket = ++tickets;
    try {
      const response = await fetch("/agent/view.json", { credentials: "same-origin" });
      if (!response.ok) return;
      const next = await response.json();
      if (ticket > appliedTicket) apply(next, ticket); // else it may be older than the page's
    } catch (e) { /* the stream brings it */ }
  }

  // Logging out of the page also signs the agent out of routing, so no offer rings for nobody.
  const logout = document.querySelector("form.logout");
  if (logout) {
    logout.addEventListener("submit", async (e) => {
      if (!view || view.agent.state === "offline" || logout.dataset.done) return;
      e.preventDefault();
      logout.dataset.done = "1";
      try {
        await api("PUT", agentPath + "/state", { state: "offline", reason: null });
      } catch (err) { /* still holding work: routing keeps the agent until it is done */ }
      logout.submit();
    });
  }

  apply(JSON.parse($("desktop-initial").textContent));
  connect("/agent/stream", "view", apply);
  setInterval(tick, 250);
  Object.assign(window.cityline, {
    view: () => view,
    selected: () => selected,
    refresh: refresh,
    onView: (hook) => { viewHooks.push(hook); if (view) hook(view); },
  });
})();
