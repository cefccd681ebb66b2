// Helpers shared by the pages' scripts (admin.js, desktop.js, wall.js), loaded before them:
// the session's CSRF token, the notice line, calls to the JSON API and the live stream (Server-
// Sent Events) with its connection badge. They are exposed as `window.cityline`, to which each
// page adds its own hooks. Data only ever goes into the page through textContent: never HTML.
"use strict";
(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  // The notice line (#notice): a message, an error, or hidden when there is no text.
  function say(text, isError) {
    const notice = document.getElementById("notice");
    notice.hidden = !text;
    notice.textContent = text || "";
    notice.classList.toggle("error", !!isError);
  }

  // A call to the JSON API under `base` with the session's CSRF token; anything but GET sends
  // `body` (or {}) as JSON. Resolves to the answer's JSON; rejects with an Error carrying the
  // API's message and the HTTP status.
  async function api(base, method, path, body) {
    const init = {
      method: method,
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin",
    };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(base + path, init);
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const err = await response.json();
        if (err && err.error && err.error.message) message = err.error.message;
      } catch (e) { /* not JSON */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // The connection badge (#conn): live, waiting to reconnect, or down.
  function setConn(state, text) {
    const conn = document.getElementById("conn");
    conn.className = "conn conn-" + state;
    conn.textContent = text;
  }

  // The page's live stream at `url`: every `eventName` event's data is parsed and handed to
  // `apply`; an `ended` event (the session is gone) closes it for good.
  function connect(url, eventName, apply) {
    const source = new EventSource(url);
    source.addEventListener("open", () => setConn("live", "live"));
    source.addEventListener(eventName, (event) => {
      setConn("live", "live");
      apply(JSON.parse(event.data));
    });
    source.addEventListener("ended", () => {
      source.close();
      setConn("down", "session ended");
      say("Your session ended. Log in again to continue.", true);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        setConn("down", "disconnected");
        say("The live feed stopped (logged out?). Reload the page to log in again.", true);
      } else {
        setConn("wait", "reconnecting…");
      }
    });
    return source;
  }

  window.cityline = { csrf: csrf, say: say, api: api, connect: connect };
})();
