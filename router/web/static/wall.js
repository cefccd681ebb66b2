// The supervisor wall: applies the live payload from /wall/stream (Server-Sent Events) to the
// server-rendered page, and sends the supervisor's actions to the JSON API.
// Data only ever goes into the page through textContent, value and class names: never HTML.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("wall-config").textContent);
  const { say, connect } = window.cityline;
  const api = (method, path, body) => window.cityline.api(config.api, method, path, body);
  const scopeSelect = document.getElementById("scope");
  const queuesByName = new Map(config.queues.map((q) => [q.name, q]));
  const STATES = ["ok", "off", "none"];
  const AGENT_STATES = ["ready", "busy", "paused", "wrapup", "offline"];
  let lastPayload = null;

  function setFields(root, fields) {
    for (const [name, value] of Object.entries(fields)) {
      root.querySelectorAll('[data-f="' + name + '"]').forEach((el) => {
        if (el.textContent !== value) el.textContent = value;
      });
    }
  }

  function setStates(root, states) {
    for (const [name, value] of Object.entries(states)) {
      root.querySelectorAll('[data-s="' + name + '"]').forEach((el) => {
        STATES.forEach((s) => el.classList.toggle("st-" + s, s === value));
      });
    }
  }

  // --- scope filter: tiles, waiting rows and charts --------------------------------------------
  function inScope(queue, channel) {
    const scope = scopeSelect.value;
    if (scope === "all") return true;
    const [kind, name] = [scope.slice(0, scope.indexOf(":")), scope.slice(scope.indexOf(":") + 1)];
    return kind === "queue" ? queue === name : channel === name;
  }

  function applyScope() {
    document.querySelectorAll(".tile").forEach((tile) => {
      tile.hidden = !inScope(tile.dataset.queue, tile.dataset.channel);
    });
    document.querySelectorAll("#waiting tbody tr").forEach((tr) => {
      tr.hidden = !inScope(tr.dataset.queue, tr.dataset.channel);
    });
    refreshCharts();
    document.getElementById("charts-scope").textContent =
      scopeSelect.options[scopeSelect.selectedIndex].text;
    const link = document.getElementById("report-link");
    link.href = "/wall/report?scope=" + encodeURIComponent(scopeSelect.value);
  }

  function refreshCharts() {
    const stamp = Date.now();
    document.querySelectorAll("img.chart").forEach((img) => {
      img.src = "/wall/chart/" + img.dataset.kind + ".svg?scope=" +
        encodeURIComponent(scopeSelect.value) + "&t=" + stamp;
    });
  }

  // --- applying a payload ------------------------------------------------------------------------
  function applyTiles(queues) {
    for (const q of queues) {
      const tile = document.querySelector('.tile[data-queue="' + CSS.escape(q.name) + '"]');
      if (!tile) continue; // queues come from the configuration: the page has every tile
      setFields(tile, q.fields);
      setStates(tile, q.states);
    }
  }

  function applyAgents(agents) {
    const tbody = document.querySelector("#agents tbody");
    const template = document.getElementById("agent-template");
    for (const a of agents) {
      let tr = tbody.querySelector('tr[data-agent="' + CSS.escape(a.id) + '"]');
      if (!tr) {
        tr = template.content.firstElementChild.cloneNode(true);
        tr.dataset.agent = a.id;
        tbody.appendChild(tr);
      }
      tr.dataset.rawState = a.raw_state;
      AGENT_STATES.forEach((s) => tr.classList.toggle("ag-" + s, s === a.state));
      setFields(tr, a.fields);
    }
  }

  function fillMoveTargets(select, row) {
    const targets = config.queues.filter((q) => q.channel === row.channel && q.name !== row.queue);
    const wanted = targets.map((q) => q.name).join(",");
    if (select.dataset.targets === wanted) return; // keep the supervisor's pick
    select.dataset.targets = wanted;
    select.replaceChildren();
    for (const q of targets) {
      const option = document.createElement("option");
      option.value = q.name;
      option.textContent = q.label;
      select.appendChild(option);
    }
    select.disabled = targets.length === 0;
  }

  function applyWaiting(rows) {
    const tbody = document.querySelector("#waiting tbody");
    const template = document.getElementById("waiting-template");
    const seen = new Set();
    let previous = null;
    for (const row of rows) {
      seen.add(row.id);
      let tr = tbody.querySelector('tr[data-ix="' + CSS.escape(row.id) + '"]');
      if (!tr) {
        tr = template.content.firstElementChild.cloneNode(true);
        tr.dataset.ix = row.id;
        tr.querySelector(".priority-raise").hidden = !config.priority_url;
      }
      // keep the server's order (queue, priority, time waited)
      const wantedPlace = previous ? previous.nextElementSibling : tbody.firstElementChild;
      if (wantedPlace !== tr) tbody.insertBefore(tr, wantedPlace);
      previous = tr;
      tr.dataset.queue = row.queue;
      tr.dataset.channel = row.channel;
      tr.dataset.priority = String(row.priority);
      setFields(tr, row.fields);
      fillMoveTargets(tr.querySelector(".move-target"), row);
      tr.hidden = !inScope(row.queue, row.channel);
    }
    tbody.querySelectorAll("tr").forEach((tr) => {
      if (!seen.has(tr.dataset.ix)) tr.remove();
    });
    document.getElementById("waiting-empty").hidden = rows.length > 0;
  }

  function apply(payload) {
    lastPayload = payload;
    applyTiles(payload.queues);
    applyAgents(payload.agents);
    applyWaiting(payload.waiting);
    for (const key of ["offered", "answered", "abandoned", "sl"]) {
      document.getElementById("total-" + key).textContent = payload.total[key];
    }
    document.getElementById("clock").textContent =
      new Date(payload.now_ms).toLocaleTimeString();
  }

  // --- supervisor actions (the JSON API, with the session's CSRF token) --------------------------
  async function setAgentState(agentId, rawState, target) {
    const [state, reason] = target.split(":");
    const path = "/agents/" + encodeURIComponent(agentId);
    if (rawState === "offline" && state !== "offline") {
      await api("POST", path + "/login", { ready: state === "ready", reason: reason || null });
    } else {
      await api("PUT", path + "/state", { state: state, reason: reason || null });
    }
  }

  document.getElementById("agents").addEventListener("click", async (event) => {
    const button = event.target.closest(".agent-apply");
    if (!button) return;
    const tr = button.closest("tr");
    const target = tr.querySelector(".agent-target").value;
    button.disabled = true;
    try {
      await setAgentState(tr.dataset.agent, tr.dataset.rawState, target);
      say("Agent " + tr.dataset.agent + ": " + target.replace(":", " "), false);
    } catch (e) {
      say("Could not change " + tr.dataset.agent + ": " + e.message, true);
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById("waiting").addEventListener("click", async (event) => {
    const tr = event.target.closest("tr");
    if (!tr) return;
    const ixPath = "/interactions/" + encodeURIComponent(tr.dataset.ix);
    const move = event.target.closest(".move-apply");
    const raise = event.target.closest(".priority-raise");
    if (!move && !raise) return;
    event.target.disabled = true;
    try {
      if (move) {
        const queue = tr.querySelector(".move-target").value;
        if (!queue) return;
        await api("POST", ixPath + "/transfer", { queue: queue, keep_position: true });
        say("Moved to " + (queuesByName.get(queue) || { label: queue }).label, false);
      } else {
        const url = config.priority_url.replace("{ix_id}", encodeURIComponent(tr.dataset.ix));
        const priority = Math.min(10, Number(tr.dataset.priority || 0) + 5);
        await api("PUT", url.slice(config.api.length), { priority: priority });
        say("Priority raised to " + priority, false);
      }
    } catch (e) {
      say("Could not change the interaction: " + e.message, true);
    } finally {
      event.target.disabled = false;
    }
  });

  scopeSelect.addEventListener("change", applyScope);
  apply(JSON.parse(document.getElementById("wall-initial").textContent));
  applyScope();
  connect("/wall/stream", "snapshot", apply);
  // the charts are per 15 minutes: a refresh a minute is plenty
  setInterval(refreshCharts, 60000);
  Object.assign(window.cityline, { lastPayload: () => lastPayload });
})();
