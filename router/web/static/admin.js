// The admin page: agents, queues and users read from the JSON API (/api/v1/admin/...) and
// changed through it with the session's CSRF token. The API validates every change against the
// whole configuration; its field errors are shown next to the fields. Data only ever goes into
// the page through textContent and value: never HTML.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("admin-config").textContent);
  const { csrf, say } = window.cityline;
  const $ = (id) => document.getElementById(id);
  const state = { agents: [], queues: [], users: [], editing: {} };

  // --- helpers -------------------------------------------------------------------------------
  async function api(method, path, body) {
    const init = { method: method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(config.api + path, init);
    } catch (err) {
      return { ok: false, status: 0, data: { error: { code: "network", message: String(err) } } };
    }
    let data = null;
    try { data = await resp.json(); } catch (err) { data = null; }
    if (resp.status === 401) window.location.assign("/login?next=/admin");
    return { ok: resp.ok, status: resp.status, data: data };
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function pairs(obj) {
    return Object.entries(obj || {}).map(([k, v]) => k + " " + v).join(", ") || "-";
  }

  function editButton(tr, label, onClick) {
    const td = document.createElement("td");
    td.className = "actions";
    if (config.can_edit) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "edit";
      button.textContent = label;
      button.addEventListener("click", onClick);
      td.appendChild(button);
    }
    tr.appendChild(td);
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error, .form-error").forEach((p) => { p.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
  }

  function showErrors(form, result) {
    const error = (result.data && result.data.error) || { message: "HTTP " + result.status };
    const details = error.details || [];
    const general = form.querySelector('.form-error[data-for=""]');
    if (!details.length) {
      general.textContent = error.message;
      return;
    }
    for (const d of details) {
      const loc = d.loc || [];
      const key = loc.length ? String(loc[0]) : "";
      let target = form.querySelector('.field-error[data-for="' + CSS.escape(key) + '"]');
      if (!target) target = general;
      const where = target === general ? loc.join(".") : loc.slice(1).join(".");
      const line = (where ? where + ": " : "") + d.msg;
      target.textContent = target.textContent ? target.textContent + "; " + line : line;
      const input = form.elements.namedItem(key);
      if (input && input.classList) input.classList.add("invalid");
    }
  }

  function num(input) {
    const v = input.value.trim();
    return v === "" ? null : Number(v);
  }

  // --- skill rows (agents' skills, queues' required skills) ------------------------------------
  function addSkillRow(form, name, level) {
    const row = $("skill-row-template").content.firstElementChild.cloneNode(true);
    const select = row.querySelector(".skill-name");
    if (name && !Array.from(select.options).some((o) => o.value === name)) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.appendChild(option);
    }
    if (name) select.value = name;
    row.dataset.skill = select.value;
    select.addEventListener("change", () => { row.dataset.skill = select.value; });
    row.querySelector(".skill-level").value = level || 1;
    row.querySelector(".skill-remove").addEventListener("click", () => row.remove());
    form.querySelector(".skill-rows").appendChild(row);
  }

  function setSkills(form, skills) {
    form.querySelector(".skill-rows").replaceChildren();
    for (const [name, level] of Object.entries(skills || {})) addSkillRow(form, name, level);
  }

  function readSkills(form) {
    const skills = {};
    form.querySelectorAll(".skill-row").forEach((row) => {
      const level = row.querySelector(".skill-level").value;
      skills[row.querySelector(".skill-name").value] = level === "" ? null : Number(level);
    });
    return skills;
  }

  function wireForm(form, onSubmit, onRemove, onReset) {
    form.querySelector(".skill-add") &&
      form.querySelector(".skill-add").addEventListener("click", () => addSkillRow(form, "", 1));
    form.querySelector(".cancel").addEventListener("click", () => { form.hidden = true; });
    form.querySelector(".remove").addEventListener("click", onRemove);
    if (onReset) form.querySelector(".reset").addEventListener("click", onReset);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      onSubmit();
    });
  }

  // --- reset to the file's definition (agents and queues alike) ------------------------------
  // kind: "agent" or "queue"; path: "/admin/agents" or "/admin/queues"; origin: of the entry
  // ("changed", "added"; "removed" for a file entry an admin removed).
  function showReset(form, origin) {
    const button = form.querySelector(".reset");
    button.hidden = !config.can_edit || !origin || origin === "file";
    button.textContent = origin === "added" ? "Reset to the file (removes it)" : "Reset to the file";
    button.dataset.origin = origin || "";
  }

  async function resetEntry(kind, path, name, origin, form) {
    const title = kind === "agent" ? "Agent" : "Queue";
    const question = origin === "added"
      ? "The configuration file does not define " + kind + " " + name + ": resetting it removes it. Go on?"
      : "Reset " + kind + " " + name + " to the configuration file's definition?";
    if (!window.confirm(question)) return;
    const result = await api("POST", path + "/" + encodeURIComponent(name) + "/reset");
    if (!result.ok) {
      if (form) {
        clearErrors(form);
        showErrors(form, result);
      }
      const error = (result.data && result.data.error) || { message: "HTTP " + result.status };
      say(title + " " + name + " not reset: " + error.message, true);
      return;
    }
    if (form) form.hidden = true;
    say(result.data.result === "removed"
      ? title + " " + name + " removed: the configuration file does not define it."
      : title + " " + name + " reset to the configuration file's definition; it applies now.");
    await load();
  }

  function renderRemoved(boxId, kind, path, names) {
    const box = $(boxId);
    box.replaceChildren();
    box.hidden = !names.length;
    if (!names.length) return;
    const label = document.createElement("span");
    label.textContent = "Removed by an admin from the file's " + kind + "s: ";
    box.appendChild(label);
    for (const name of names) {
      const item = document.createElement("span");
      item.className = "removed-entry";
      item.dataset.name = name;
      item.textContent = name + " ";
      if (config.can_edit) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "restore";
        button.textContent = "Reset to the file";
        button.addEventListener("click", () => resetEntry(kind, path, name, "removed", null));
        item.appendChild(button);
      }
      box.appendChild(item);
      box.appendChild(document.createTextNode(" "));
    }
  }

  // --- agents --------------------------------------------------------------------------------
  const agentForm = $("agent-form");
  const capacityBox = agentForm.querySelector(".capacity-inputs");
  for (const ch of config.channels) {
    const label = document.createElement("label");
    label.textContent = ch + " ";
    const input = document.createElement("input");
    input.type = "number";
    input.min = "0";
    input.max = "20";
    input.name = "cap-" + ch;
    input.className = "cap";
    label.appendChild(input);
    capacityBox.appendChild(label);
  }

  function renderAgents() {
    const body = $("agents-table").tBodies[0];
    body.replaceChildren();
    for (const a of state.agents) {
      const tr = document.createElement("tr");
      tr.dataset.id = a.id;
      cell(tr, a.id);
      cell(tr, a.config.name);
      cell(tr, a.config.line);
      cell(tr, pairs(a.config.skills), "skills");
      cell(tr, pairs(a.config.capacity), "capacity");
      cell(tr, a.state);
      cell(tr, a.origin, "origin origin-" + a.origin);
      editButton(tr, "Edit", () => openAgent(a));
      body.appendChild(tr);
    }
  }

  function openAgent(a) {
    clearErrors(agentForm);
    const c = a ? a.config : { name: "", line: "first", endpoint: "", skills: {},
                               capacity: config.default_capacity };
    agentForm.elements.id.value = a ? a.id : "";
    agentForm.elements.id.readOnly = !!a;
    agentForm.elements.name.value = c.name;
    agentForm.elements.line.value = c.line;
    agentForm.elements.endpoint.value = c.endpoint || "";
    setSkills(agentForm, c.skills);
    for (const ch of config.channels) {
      agentForm.elements["cap-" + ch].value = (c.capacity || {})[ch] ?? "";
    }
    $("agent-form-title").textContent = a ? "Agent " + a.id : "New agent";
    agentForm.querySelector(".remove").hidden = !a;
    showReset(agentForm, a ? a.origin : "");
    agentForm.hidden = false;
    agentForm.elements[a ? "name" : "id"].focus();
  }

  async function saveAgent() {
    clearErrors(agentForm);
    const id = agentForm.elements.id.value.trim();
    if (!id) {
      agentForm.querySelector('.field-error[data-for="id"]').textContent = "give the agent an id";
      return;
    }
    const capacity = {};
    for (const ch of config.channels) {
      const v = num(agentForm.elements["cap-" + ch]);
      if (v !== null) capacity[ch] = v;
    }
    const body = {
      name: agentForm.elements.name.value.trim(),
      line: agentForm.elements.line.value,
      endpoint: agentForm.elements.endpoint.value.trim(),
      skills: readSkills(agentForm),
      capacity: capacity,
    };
    const result = await api("PUT", "/admin/agents/" + encodeURIComponent(id), body);
    if (!result.ok) {
      showErrors(agentForm, result);
      say("Agent " + id + " not saved: see the form.", true);
      return;
    }
    agentForm.hidden = true;
    say("Agent " + id + " saved; it applies now.");
    await load();
  }

  async function removeAgent() {
    const id = agentForm.elements.id.value.trim();
    if (!window.confirm("Remove agent " + id + "?")) return;
    const result = await api("DELETE", "/admin/agents/" + encodeURIComponent(id));
    if (!result.ok) {
      clearErrors(agentForm);
      showErrors(agentForm, result);
      say("Agent " + id + " not removed: see the form.", true);
      return;
    }
    agentForm.hidden = true;
    say("Agent " + id + " removed.");
    await load();
  }

  function resetAgent() {
    const id = agentForm.elements.id.value.trim();
    return resetEntry("agent", "/admin/agents", id,
                      agentForm.querySelector(".reset").dataset.origin, agentForm);
  }

  wireForm(agentForm, saveAgent, removeAgent, resetAgent);
  if ($("agent-new")) $("agent-new").addEventListener("click", () => openAgent(null));

  // --- queues --------------------------------------------------------------------------------
  const queueForm = $("queue-form");

  function renderQueues() {
    const body = $("queues-table").tBodies[0];
    body.replaceChildren();
    for (const q of state.queues) {
      const c = q.config;
      const tr = document.createElement("tr");
      tr.dataset.name = q.name;
      cell(tr, q.name);
      cell(tr, c.channel);
      cell(tr, pairs(c.skills), "skills");
      cell(tr, c.priority);
      cell(tr, c.strategy);
      cell(tr, c.service_level.target_pct + "% in " + c.service_level.threshold_s + " s", "sl");
      cell(tr, c.offer_timeout_s + " s");
      cell(tr, c.wrapup_s + " s");
      cell(tr, c.max_wait_s === null ? "-" : c.max_wait_s + " s → " + (c.overflow || "leave"));
      cell(tr, q.waiting);
      cell(tr, q.origin, "origin origin-" + q.origin);
      editButton(tr, "Edit", () => openQueue(q));
      body.appendChild(tr);
    }
  }

  function openQueue(q) {
    clearErrors(queueForm);
    const c = q ? q.config : { channel: config.channels[0], priority: 0,
      strategy: "longest_idle", service_level: { target_pct: 80, threshold_s: 60 },
      abandon_target_pct: 5, offer_timeout_s: 20, wrapup_s: 0, max_wait_s: null,
      overflow: null, skills: {}, labels: {}, escalation: [] };
    state.editing.queue = c;
    const f = queueForm.elements;
    f.name.value = q ? q.name : "";
    f.name.readOnly = !!q;
    f.channel.value = c.channel;
    f.priority.value = c.priority;
    f.strategy.value = c.strategy;
    f.sl_pct.value = c.service_level.target_pct;
    f.sl_s.value = c.service_level.threshold_s;
    f.abandon_target_pct.value = c.abandon_target_pct;
    f.offer_timeout_s.value = c.offer_timeout_s;
    f.wrapup_s.value = c.wrapup_s;
    f.max_wait_s.value = c.max_wait_s === null ? "" : c.max_wait_s;
    f.overflow.value = c.overflow || "";
    setSkills(queueForm, c.skills);
    const steps = (c.escalation || []).length;
    queueForm.querySelector(".escalation-note").textContent = steps
      ? steps + " escalation step(s) and the labels are kept as they are (change them with "
        + "`cityline queue set NAME --from-json FILE`)."
      : "No escalation steps (add them with `cityline queue set NAME --from-json FILE`).";
    $("queue-form-title").textContent = q ? "Queue " + q.name : "New queue";
    queueForm.querySelector(".remove").hidden = !q;
    showReset(queueForm, q ? q.origin : "");
    queueForm.hidden = false;
  }

  async function saveQueue() {
    clearErrors(queueForm);
    const f = queueForm.elements;
    const name = f.name.value.trim();
    if (!name) {
      queueForm.querySelector('.field-error[data-for="name"]').textContent = "give the queue a name";
      return;
    }
    const kept = state.editing.queue || {};
    const body = {
      channel: f.channel.value,
      labels: kept.labels || {},
      skills: readSkills(queueForm),
      priority: num(f.priority),
      strategy: f.strategy.value,
      service_level: { target_pct: num(f.sl_pct), threshold_s: num(f.sl_s) },
      abandon_target_pct: num(f.abandon_target_pct),
      max_wait_s: num(f.max_wait_s),
      overflow: f.overflow.value.trim() || null,
      offer_timeout_s: num(f.offer_timeout_s),
      wrapup_s: num(f.wrapup_s),
      escalation: kept.escalation || [],
    };
    const result = await api("PUT", "/admin/queues/" + encodeURIComponent(name), body);
    if (!result.ok) {
      showErrors(queueForm, result);
      say("Queue " + name + " not saved: see the form.", true);
      return;
    }
    queueForm.hidden = true;
    say("Queue " + name + " saved; it applies now.");
    await load();
  }

  async function removeQueue() {
    const name = queueForm.elements.name.value.trim();
    if (!window.confirm("Remove queue " + name + "?")) return;
    const result = await api("DELETE", "/admin/queues/" + encodeURIComponent(name));
    if (!result.ok) {
      clearErrors(queueForm);
      showErrors(queueForm, result);
      say("Queue " + name + " not removed: see the form.", true);
      return;
    }
    queueForm.hidden = true;
    say("Queue " + name + " removed.");
    await load();
  }

  function resetQueue() {
    const name = queueForm.elements.name.value.trim();
    return resetEntry("queue", "/admin/queues", name,
                      queueForm.querySelector(".reset").dataset.origin, queueForm);
  }

  wireForm(queueForm, saveQueue, removeQueue, resetQueue);
  if ($("queue-new")) $("queue-new").addEventListener("click", () => openQueue(null));

  // --- users ---------------------------------------------------------------------------------
  const userForm = $("user-form");

  function renderUsers() {
    if (!$("users-table")) return;
    const body = $("users-table").tBodies[0];
    body.replaceChildren();
    for (const u of state.users) {
      const tr = document.createElement("tr");
      tr.dataset.username = u.username;
      cell(tr, u.username);
      cell(tr, u.role);
      cell(tr, u.agent_id || "-");
      cell(tr, u.has_password ? "set" : "none");
      cell(tr, u.locked_out ? "yes" : "no", u.locked_out ? "error" : "");
      cell(tr, u.configured ? "yes" : "no");
      editButton(tr, "Edit", () => openUser(u));
      body.appendChild(tr);
    }
  }

  function openUser(u) {
    clearErrors(userForm);
    const f = userForm.elements;
    f.username.value = u ? u.username : "";
    f.username.readOnly = !!u;
    f.role.value = u ? u.role : "agent";
    f.agent_id.value = u ? (u.agent_id || "") : "";
    f.password.value = "";
    userForm.querySelector(".password-caption").textContent =
      u ? "New password (empty: unchanged)" : "Password (at least 8 characters)";
    $("user-form-title").textContent = u ? "User " + u.username : "New user";
    userForm.querySelector(".remove").hidden = !u || u.username === config.me;
    userForm.querySelector(".unlock").hidden = !u || !u.locked_out;
    state.editing.user = u;
    userForm.hidden = false;
  }

  async function saveUser() {
    clearErrors(userForm);
    const f = userForm.elements;
    const existing = state.editing.user;
    const body = { role: f.role.value, agent_id: f.agent_id.value.trim() || (existing ? "" : null) };
    if (f.password.value) body.password = f.password.value;
    let result;
    if (existing) {
      result = await api("PUT", "/admin/users/" + encodeURIComponent(existing.username), body);
    } else {
      body.username = f.username.value.trim();
      if (body.agent_id === null) delete body.agent_id;
      result = await api("POST", "/admin/users", body);
    }
    f.password.value = "";
    if (!result.ok) {
      showErrors(userForm, result);
      return;
    }
    userForm.hidden = true;
    say("User " + result.data.username + " saved.");
    await load();
  }

  async function removeUser() {
    const u = state.editing.user;
    if (!u || !window.confirm("Remove user " + u.username + " and revoke their tokens?")) return;
    const result = await api("DELETE", "/admin/users/" + encodeURIComponent(u.username));
    if (!result.ok) {
      showErrors(userForm, result);
      return;
    }
    userForm.hidden = true;
    say("User " + u.username + " removed.");
    await load();
  }

  if (userForm) {
    wireForm(userForm, saveUser, removeUser);
    userForm.querySelector(".unlock").addEventListener("click", async () => {
      const u = state.editing.user;
      const result = await api("POST", "/admin/users/" + encodeURIComponent(u.username) + "/unlock");
      if (!result.ok) {
        showErrors(userForm, result);
        return;
      }
      userForm.hidden = true;
      say("User " + u.username + " may log in again.");
      await load();
    });
    $("user-new").addEventListener("click", () => openUser(null));
  }

  // --- loading -------------------------------------------------------------------------------
  async function load() {
    const [agents, queues] = await Promise.all([api("GET", "/admin/agents"),
                                                api("GET", "/admin/queues")]);
    if (!agents.ok || !queues.ok) {
      say("Could not read the agents and queues (HTTP " + agents.status + ").", true);
      return;
    }
    state.agents = agents.data.agents;
    state.queues = queues.data.queues;
    $("directory-version").textContent = "version " + agents.data.version;
    renderAgents();
    renderQueues();
    renderRemoved("agents-removed", "agent", "/admin/agents", agents.data.removed || []);
    renderRemoved("queues-removed", "queue", "/admin/queues", queues.data.removed || []);
    if (config.can_edit) {
      const users = await api("GET", "/admin/users");
      if (users.ok) {
        state.users = users.data.users;
        renderUsers();
      }
    }
    document.body.dataset.loaded = String(agents.data.version);
  }

  load();
})();
