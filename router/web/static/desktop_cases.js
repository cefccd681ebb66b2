// Cases on the agent desktop, loaded after desktop.js (which it hooks through
// window.cityline.onView). First line: the "Case" form on an interaction the agent holds, its
// likely duplicates with a "Link to this case" button, the case number once there is one.
// Second line: "My unit's cases" (the units this agent is a member of), refreshed on a timer
// and on the view push, one case's history, its status change and hand-over, its photos (img
// tags on GET /api/v1/cases/{number}/photos/{i}, the session cookie authenticates them), an
// Open311 client's external media links (opened by the browser, never fetched by the server)
// and "Add a photo" (multipart upload, e.g. the crew's photo of the finished work).
// Data only ever goes into the page through textContent, value and class names: never HTML.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("desktop-config").textContent);
  const cases = config.cases;
  if (!cases) return;
  const { say } = window.cityline;
  const api = (method, path, body) => window.cityline.api(config.api, method, path, body);
  const $ = (id) => document.getElementById(id);
  const categories = new Map(cases.categories.map((c) => [c.id, c.label]));
  const units = new Map(cases.units.map((u) => [u.id, u.label]));
  // docs/cases.md, "Statuses": where each status may go
  const NEXT = {
    open: ["assigned", "in_progress", "rejected", "duplicate"],
    assigned: ["open", "in_progress", "rejected", "duplicate"],
    in_progress: ["completed", "rejected"],
    completed: [], rejected: [], duplicate: [],
  };

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function when(ms) { return ms ? new Date(ms).toLocaleString() : ""; }

  function caseUrl(number) { return "/cases/" + encodeURIComponent(number); }

  // --- first line: the case form on an interaction --------------------------------------------
  const wired = new Map(); // ix id -> {panel, item}

  function place(form) {
    const lat = form.querySelector(".case-lat").value.trim().replace(",", ".");
    const lon = form.querySelector(".case-lon").value.trim().replace(",", ".");
    if (!lat || !lon) return null;
    const p = { lat: Number(lat), lon: Number(lon) };
    return Number.isFinite(p.lat) && Number.isFinite(p.lon) ? p : null;
  }

  function showDuplicates(entry, list) {
    const box = entry.panel.querySelector(".case-dups");
    const ul = box.querySelector("ul");
    ul.replaceChildren();
    for (const d of list || []) {
      const li = el("li", null, "case-dup");
      li.appendChild(el("b", d.number));
      li.appendChild(el("span", " · " + d.status + " · " + (d.address || "no address")));
      if (!entry.item.case) {
        const button = el("button", "Link to this case", "case-link");
        button.type = "button";
        button.addEventListener("click", () => link(entry, d.number, button));
        li.appendChild(button);
      }
      ul.appendChild(li);
    }
    box.hidden = ul.children.length === 0;
  }

  async function link(entry, number, button) {
    button.disabled = true;
    try {
      const contact = entry.panel.querySelector(".case-contact").value.trim();
      const notify = entry.panel.querySelector(".case-notify").checked;
      const data = await api("POST", "/interactions/" + encodeURIComponent(entry.item.id) +
        "/case/link", { case_number: number, contact: contact, notify: notify });
      say(entry.item.ref + ": linked to the case " + data.case.number, false);
      showNumber(entry, data.case.number);
    } catch (e) {
      say("Could not link the case: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function showNumber(entry, number) {
    entry.item = Object.assign({}, entry.item, { case: number });
    const dd = entry.panel.querySelector('[data-f="case"]');
    if (dd) dd.textContent = number;
    const row = entry.panel.querySelector('[data-row="case"]');
    if (row) row.hidden = !number;
    entry.panel.querySelector(".case-form").hidden = true;
    entry.panel.querySelectorAll(".case-link").forEach((b) => b.remove());
  }

  async function checkDuplicates(entry, button) {
    const form = entry.panel.querySelector(".case-form");
    const p = place(form);
    if (!p) {
      say("Give the latitude and longitude to look for duplicates.", true);
      return;
    }
    button.disabled = true;
    try {
      const params = new URLSearchParams({
        category: form.querySelector(".case-category").value, lat: p.lat, lon: p.lon,
      });
      const data = await api("GET", "/cases/duplicates?" + params.toString());
      showDuplicates(entry, data.duplicates);
      say(data.duplicates.length ? "" : "No likely duplicate nearby.", false);
    } catch (e) {
      say("Could not look for duplicates: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async function create(entry) {
    const form = entry.panel.querySelector(".case-form");
    const button = form.querySelector(".case-create");
    const body = {
      category: form.querySelector(".case-category").value,
      description: form.querySelector(".case-description").value.trim(),
      address: form.querySelector(".case-address").value.trim(),
      contact: form.querySelector(".case-contact").value.trim(),
      photos: form.querySelector(".case-photos").checked,
      notify: form.querySelector(".case-notify").checked,
    };
    const p = place(form);
    if (p) Object.assign(body, p);
    button.disabled = true;
    try {
      const data = await api("POST", "/interactions/" + encodeURIComponent(entry.item.id) +
        "/case", body);
      showNumber(entry, data.case.number);
      showDuplicates(entry, data.duplicates);
      say(entry.item.ref + ": case " + data.case.number + " made" +
        (data.duplicates.length ? " (see the likely duplicates)" : ""), false);
    } catch (e) {
      say("Could not make the case: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function wire(panel, item) {
    const entry = { panel: panel, item: item };
    const form = panel.querySelector(".case-form");
    form.querySelector(".case-description").value =
      [item.subject, item.body].filter(Boolean).join("\n\n");
    if (categories.has(item.topic)) form.querySelector(".case-category").value = item.topic;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      create(entry);
    });
    form.querySelector(".case-check").addEventListener("click", (e) =>
      checkDuplicates(entry, e.currentTarget));
    return entry;
  }

  function applyWork(view) {
    const seen = new Set();
    for (const item of view.work) {
      const panel = document.querySelector('#panels article.work[data-ix="' +
        CSS.escape(item.id) + '"]');
      if (!panel || !panel.querySelector(".case-form")) continue;
      seen.add(item.id);
      let entry = wired.get(item.id);
      if (!entry || entry.panel !== panel) {
        entry = wire(panel, item);
        wired.set(item.id, entry);
      }
      const known = entry.item.case;
      entry.item = Object.assign({}, item, { case: item.case || known || "" });
      const held = item.state === "connected" || item.state === "wrapup";
      panel.querySelector(".case-form").hidden = !held || !!entry.item.case;
      if (entry.item.case) showNumber(entry, entry.item.case);
    }
    for (const id of wired.keys()) if (!seen.has(id)) wired.delete(id);
  }

  // --- second line: my unit's cases -------------------------------------------------------------
  let open = null; // the case shown: the API's CaseView
  let lastRead = 0;

  function row(c) {
    const tr = document.createElement("tr");
    tr.className = "uc-row" + (c.overdue ? " uc-overdue" : "");
    tr.dataset.number = c.number;
    const button = el("button", c.number, "uc-open");
    button.type = "button";
    button.addEventListener("click", () => show(c.number));
    const first = document.createElement("td");
    first.appendChild(button);
    tr.appendChild(first);
    tr.appendChild(el("td", categories.get(c.category) || c.category));
    tr.appendChild(el("td", c.status, "uc-st uc-st-" + c.status.replace(/[^a-z_]/g, "")));
    tr.appendChild(el("td", when(c.due_ms) + (c.overdue ? " (overdue)" : ""), "uc-due"));
    tr.appendChild(el("td", c.address));
    tr.appendChild(el("td", units.get(c.unit) || c.unit));
    return tr;
  }

  async function readList() {
    if (!$("unit-cases")) return;
    lastRead = Date.now();
    const rows = [];
    for (const unit of cases.my_units) {
      try {
        const data = await api("GET", "/units/" + encodeURIComponent(unit) + "/cases");
        for (const c of data.cases) rows.push(c);
      } catch (e) {
        say("Could not read the cases of " + (units.get(unit) || unit) + ": " + e.message, true);
      }
    }
    rows.sort((a, b) => a.due_ms - b.due_ms);
    $("uc-rows").replaceChildren(...rows.map(row));
    $("uc-empty").hidden = rows.length > 0;
    $("uc-count").textContent = rows.length ? "(" + rows.length + ")" : "";
  }

  function showMedia(c) {
    const items = (c.media || []).map((m) => {
      const a = el("a", null, m.kind === "photo" ? "uc-photo-link" : "uc-media-link");
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      if (m.kind === "photo") {
        a.href = m.url;
        const img = el("img", null, "uc-thumb");
        img.alt = "Photo " + (m.index + 1) + " of case " + c.number;
        img.loading = "lazy";
        img.src = m.url;
        a.appendChild(img);
      } else if (/^https?:\/\//.test(m.url)) {
        // someone else's server: a link the agent may choose to open, never loaded by the page
        a.href = m.url;
        a.referrerPolicy = "no-referrer";
        a.textContent = "External photo: " + m.url;
      } else {
        return el("span", m.url);
      }
      return a;
    });
    $("uc-media").replaceChildren(...items);
    $("uc-media").hidden = items.length === 0;
  }

  async function addPhoto() {
    if (!open) return;
    const input = $("uc-photo");
    if (!input.files.length) {
      say("Choose a photo first.", true);
      return;
    }
    const button = $("uc-photo-go");
    const body = new FormData();
    body.append("photo", input.files[0]);
    const note = $("uc-photo-note").value.trim();
    if (note) body.append("note", note);
    button.disabled = true;
    try {
      // multipart, so not window.cityline.api (JSON only); the same session and CSRF token
      const response = await fetch(config.api + caseUrl(open.number) + "/photos", {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRF-Token": window.cityline.csrf },
      });
      let data = null;
      try { data = await response.json(); } catch (e) { /* not JSON */ }
      if (!response.ok) {
        throw new Error((data && data.error && data.error.message) ||
          response.status + " " + response.statusText);
      }
      input.value = "";
      $("uc-photo-note").value = "";
      showCase(data.case);
      say("Photo added to case " + data.case.number, false);
    } catch (e) {
      say("Could not add the photo: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function showCase(c) {
    open = c;
    showMedia(c);
    $("uc-number").textContent = c.number;
    $("uc-status").textContent = c.status;
    $("uc-due").textContent = c.due_ms ? "due " + when(c.due_ms) + (c.overdue ? " (overdue)" : "") : "";
    $("uc-case").classList.toggle("uc-overdue", !!c.overdue);
    $("uc-desc").textContent = c.description;
    $("uc-category").textContent = categories.get(c.category) || c.category;
    $("uc-address").textContent = c.address || "no address";
    const items = c.history.map((h) => {
      const li = el("li");
      li.appendChild(el("b", h.action === "photo" ? "photo added" : h.status));
      li.appendChild(el("span", " · " + when(h.time_ms) + (h.by ? " · " + h.by : "") +
        (h.unit ? " · " + (units.get(h.unit) || h.unit) : "")));
      if (h.note) li.appendChild(el("div", "Note: " + h.note, "uc-note"));
      if (h.public_note) li.appendChild(el("div", "For the resident: " + h.public_note, "uc-public"));
      if (h.duplicate_of) li.appendChild(el("div", "Duplicate of " + h.duplicate_of));
      return li;
    });
    $("uc-history").replaceChildren(...items);
    // who hears of the outcome, and how (the API never gives their addresses)
    const told = (c.residents || []).map((r) => r.declined ? "declined"
      : (r.told_by || "status page only") + (r.channel && r.channel !== r.told_by ? " (reported by " + r.channel + ")" : ""));
    $("uc-residents").textContent = told.length
      ? "Residents told of the outcome: " + told.join("; ") : "No resident to tell.";
    const next = NEXT[c.status] || [];
    $("uc-next").replaceChildren(...next.map((s) => {
      const option = el("option", s);
      option.value = s;
      return option;
    }));
    $("uc-status-form").hidden = next.length === 0;
    $("uc-unit-form").hidden = next.length === 0;
    $("uc-dup-of").hidden = $("uc-next").value !== "duplicate";
    $("uc-unit").value = c.unit;
    $("uc-case").hidden = false;
  }

  async function show(number) {
    try {
      showCase(await api("GET", caseUrl(number)));
    } catch (e) {
      say("Could not open the case " + number + ": " + e.message, true);
    }
  }

  async function changeStatus() {
    if (!open) return;
    const button = $("uc-status-go");
    const body = {
      status: $("uc-next").value,
      note: $("uc-note").value.trim(),
      public_note: $("uc-public-note").value.trim(),
    };
    if (body.status === "duplicate") body.duplicate_of = $("uc-dup-of").value.trim();
    button.disabled = true;
    try {
      const data = await api("PUT", caseUrl(open.number) + "/status", body);
      $("uc-note").value = "";
      $("uc-public-note").value = "";
      $("uc-dup-of").value = "";
      showCase(data.case);
      say("Case " + data.case.number + " is now " + data.case.status, false);
      await readList();
    } catch (e) {
      say("Could not change the status: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async function handOver() {
    if (!open || $("uc-unit").value === open.unit) return;
    const button = $("uc-unit-go");
    button.disabled = true;
    try {
      const c = await api("PUT", caseUrl(open.number) + "/unit", { unit: $("uc-unit").value });
      showCase(c);
      say("Case " + c.number + " handed over to " + (units.get(c.unit) || c.unit), false);
      await readList();
    } catch (e) {
      say("Could not hand the case over: " + e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  if ($("unit-cases")) {
    $("uc-status-form").addEventListener("submit", (e) => {
      e.preventDefault();
      changeStatus();
    });
    $("uc-unit-form").addEventListener("submit", (e) => {
      e.preventDefault();
      handOver();
    });
    $("uc-photo-form").addEventListener("submit", (e) => {
      e.preventDefault();
      addPhoto();
    });
    $("uc-next").addEventListener("change", () => {
      $("uc-dup-of").hidden = $("uc-next").value !== "duplicate";
    });
    $("uc-close").addEventListener("click", () => {
      open = null;
      $("uc-case").hidden = true;
    });
    readList();
    setInterval(readList, (cases.refresh_s || 15) * 1000);
  }

  let lastMark = "";
  window.cityline.onView((view) => {
    applyWork(view);
    if (!$("unit-cases")) return;
    // a case of my units changed (made, moved, linked, handed over): read the list at once;
    // any other view push: read it again at most every 2 s
    const mark = view.cases_mark || "";
    if (mark !== lastMark || Date.now() - lastRead > 2000) readList();
    lastMark = mark;
  });
  Object.assign(window.cityline, { readCases: readList });
})();
