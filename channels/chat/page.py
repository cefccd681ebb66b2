"""The resident chat page: small, phone-friendly, dependency-free JavaScript over WebSocket.

Every text from outside (the resident's, the agent's, the reference number) is put into the page
with `textContent`, so a `<script>` in a message is shown, never run. The reconnect token is kept
in sessionStorage: a reload or a dropped connection resumes the same conversation.
"""

from __future__ import annotations

import html
import json

TEXTS = {
    "pl": {"title": "Czat z urzędem", "start": "Rozpocznij rozmowę", "name": "Imię (opcjonalnie)",
           "send": "Wyślij", "leave": "Zakończ", "placeholder": "Napisz wiadomość…",
           "ref": "Numer sprawy: ", "waiting": "Miejsce w kolejce: {p}, szacowany czas: {m} min",
           "joined": "Konsultant {n} dołączył(a) do rozmowy", "you": "Ty", "agent": "Urząd",
           "ended": "Rozmowa zakończona", "reconnecting": "Łączenie ponownie…",
           "error": "Błąd: ",
           "contact": "E-mail lub telefon (opcjonalnie: powiadomimy o załatwieniu zgłoszenia)",
           "consent": "Zapamiętaj mnie, aby konsultanci widzieli moje wcześniejsze kontakty "
                      "z urzędem",
           "reply_pending": "Twoja wiadomość została odczytana, konsultant wkrótce odpowie.",
           "agent_inactive": "Konsultant nie odpowiada. Czekasz na innego konsultanta, "
                             "Twoje miejsce w kolejce jest zachowane.",
           "transferred": "Rozmowa została przekazana. Czekasz na kolejnego konsultanta."},
    "en": {"title": "Chat with the city", "start": "Start chat", "name": "Name (optional)",
           "send": "Send", "leave": "End chat", "placeholder": "Type a message…",
           "ref": "Reference number: ", "waiting": "Place in line: {p}, estimated wait: {m} min",
           "joined": "{n} joined the conversation", "you": "You", "agent": "City",
           "ended": "The conversation has ended", "reconnecting": "Reconnecting…",
           "error": "Error: ",
           "contact": "E-mail or phone (optional: to tell you when your report is dealt with)",
           "consent": "Remember me so agents can see my earlier contacts with the city",
           "reply_pending": "Your message was seen, an agent will answer shortly.",
           "agent_inactive": "The agent is not responding. You are waiting for another agent; "
                             "your place in line is kept.",
           "transferred": "Your conversation was passed on. You are waiting for another agent."},
    "uk": {"title": "Чат з міською радою", "start": "Почати розмову",
           "name": "Ім'я (необов'язково)", "send": "Надіслати", "leave": "Завершити",
           "placeholder": "Напишіть повідомлення…", "ref": "Номер справи: ",
           "waiting": "Місце в черзі: {p}, орієнтовний час: {m} хв",
           "joined": "{n} приєднався(лася) до розмови", "you": "Ви", "agent": "Місто",
           "ended": "Розмову завершено", "reconnecting": "Повторне з'єднання…",
           "error": "Помилка: ",
           "contact": "E-mail або телефон (необов'язково: повідомимо, коли звернення "
                      "буде виконано)",
           "consent": "Запам'ятати мене, щоб консультанти бачили мої попередні звернення "
                      "до міської ради",
           "reply_pending": "Ваше повідомлення прочитано, консультант незабаром відповість.",
           "agent_inactive": "Консультант не відповідає. Ви очікуєте на іншого консультанта, "
                             "ваше місце в черзі збережено.",
           "transferred": "Розмову передано. Ви очікуєте на іншого консультанта."},
}

LANGUAGE_NAMES = {"pl": "Polski", "en": "English", "uk": "Українська"}

_TEMPLATE = """<!doctype html>
<html lang="pl">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.4 system-ui, sans-serif; background: #f4f5f7; color: #222;
         display: flex; flex-direction: column; height: 100vh; height: 100dvh; }
  header { background: #1d4f91; color: #fff; padding: .6rem 1rem; display: flex;
           align-items: center; justify-content: space-between; gap: .5rem; }
  header h1 { font-size: 1.1rem; margin: 0; }
  #status { padding: .4rem 1rem; background: #e8eef7; font-size: .9rem; min-height: 1.8rem; }
  #log { flex: 1; overflow-y: auto; padding: 1rem; display: flex; flex-direction: column;
         gap: .5rem; }
  .msg { max-width: 85%; padding: .5rem .75rem; border-radius: .75rem; white-space: pre-wrap;
         overflow-wrap: anywhere; }
  .me { align-self: flex-end; background: #1d4f91; color: #fff; }
  .agent { align-self: flex-start; background: #fff; border: 1px solid #ccd; }
  .info { align-self: center; color: #555; font-size: .85rem; }
  form { display: flex; gap: .5rem; padding: .6rem; background: #fff; border-top: 1px solid #ddd; }
  input, select, button { font: inherit; padding: .55rem; border-radius: .4rem;
                          border: 1px solid #bbc; }
  #text { flex: 1; min-width: 0; }
  button { background: #1d4f91; color: #fff; border: 0; }
  #startbox { padding: 1rem; display: flex; flex-direction: column; gap: .6rem; }
  .consent { display: flex; gap: .5rem; align-items: flex-start; font-size: .9rem; }
  .consent input { margin-top: .2rem; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <select id="lang" aria-label="Language">__OPTIONS__</select>
</header>
<div id="status" role="status" aria-live="polite"></div>
<div id="startbox">
  <input id="name" maxlength="200" autocomplete="given-name">
  <input id="contact" maxlength="320" autocomplete="email">
  <label class="consent"><input id="consent" type="checkbox"> <span id="consenttext"></span></label>
  <button id="start" type="button"></button>
</div>
<div id="log" aria-live="polite"></div>
<form id="form" hidden>
  <input id="text" autocomplete="off" maxlength="__MAXLEN__">
  <button id="send" type="submit"></button>
  <button id="leave" type="button"></button>
</form>
<script nonce="__NONCE__">
(function () {
  "use strict";
  var TEXTS = __TEXTS__;
  var KEY = "cityline.chat.token";
  var $ = function (id) { return document.getElementById(id); };
  var lang = sessionStorage.getItem(KEY + ".lang") || (navigator.language || "pl").slice(0, 2);
  if (!TEXTS[lang] || !$("lang").querySelector('option[value="' + lang + '"]')) {
    lang = $("lang").options[0].value;
  }
  var ws = null, ended = false, retry = 0;

  function t(key) { return (TEXTS[lang] || TEXTS.pl)[key]; }
  function label() {
    document.documentElement.lang = lang;
    $("lang").value = lang;
    $("title").textContent = t("title");
    $("start").textContent = t("start");
    $("name").placeholder = t("name");
    $("contact").placeholder = t("contact");
    $("consenttext").textContent = t("consent");
    $("send").textContent = t("send");
    $("leave").textContent = t("leave");
    $("text").placeholder = t("placeholder");
  }
  function status(text) { $("status").textContent = text; }
  function add(kind, text) {
    var div = document.createElement("div");
    div.className = "msg " + kind;
    div.textContent = text;
    $("log").appendChild(div);
    $("log").scrollTop = $("log").scrollHeight;
    return div;
  }
  // a city message's status link (the server sends only /cases/... links) made clickable: the
  // text stays text nodes, the link an element whose href is checked to be http(s)
  function linkify(div, link) {
    var url;
    try { url = new URL(link, location.href); } catch (e) { return; }
    if (url.protocol !== "https:" && url.protocol !== "http:") { return; }
    var text = div.textContent, at = text.indexOf(link);
    var a = document.createElement("a");
    a.href = url.href;
    a.textContent = link;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    if (at < 0) {
      div.appendChild(document.createTextNode(String.fromCharCode(10)));
      div.appendChild(a);
      return;
    }
    div.textContent = "";
    div.appendChild(document.createTextNode(text.slice(0, at)));
    div.appendChild(a);
    div.appendChild(document.createTextNode(text.slice(at + link.length)));
  }
  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }
  function connect(first) {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/chat/ws");
    ws.onopen = function () {
      retry = 0;
      var token = sessionStorage.getItem(KEY);
      if (token) { send({type: "resume", token: token}); }
      else if (first) { send(first); }
    };
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "started") {
        sessionStorage.setItem(KEY, f.token);
        $("startbox").hidden = true;
        $("form").hidden = false;
        status(t("ref") + f.ref);
      } else if (f.type === "waiting") {
        status(t("waiting").replace("{p}", String(f.position))
          .replace("{m}", String(Math.ceil(f.estimated_wait_s / 60))));
      } else if (f.type === "agent_joined") {
        status(t("joined").replace("{n}", String(f.name)));
        add("info", t("joined").replace("{n}", String(f.name)));
      } else if (f.type === "agent_left") {
        add("info", t(f.reason) || String(f.text));
      } else if (f.type === "notice") {
        add("info", t(f.code) || String(f.text));
      } else if (f.type === "message") {
        var div = add(f.from === "resident" ? "me" : "agent", String(f.text));
        if (f.from === "city" && f.link) { linkify(div, String(f.link)); }
      } else if (f.type === "ended") {
        finish();
      } else if (f.type === "error") {
        if (f.code === "unknown_token") { sessionStorage.removeItem(KEY); finish(); }
        else {
          add("info", t("error") + String(f.message));
          if (!sessionStorage.getItem(KEY)) { $("start").disabled = false; }
        }
      }
    };
    ws.onclose = function (ev) {
      ws = null;
      if (ended || ev.code === 1008 || !sessionStorage.getItem(KEY)) { return; }
      status(t("reconnecting"));
      retry = Math.min(retry + 1, 6);
      setTimeout(function () { connect(null); }, 500 * Math.pow(2, retry - 1));
    };
  }
  function finish() {
    ended = true;
    sessionStorage.removeItem(KEY);
    status(t("ended"));
    add("info", t("ended"));
    $("form").hidden = true;
    if (ws) { ws.close(); }
  }
  $("lang").addEventListener("change", function () {
    lang = $("lang").value;
    sessionStorage.setItem(KEY + ".lang", lang);
    label();
  });
  $("start").addEventListener("click", function () {
    ended = false;
    $("start").disabled = true;
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
    connect({type: "start", language: lang, topic: null, name: $("name").value,
             contact: $("contact").value, consent: $("consent").checked});
  });
  $("form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = $("text").value.trim();
    if (!text) { return; }
    if (send({type: "message", text: text})) { add("me", text); $("text").value = ""; }
  });
  $("leave").addEventListener("click", function () { send({type: "leave"}); });
  label();
  if (sessionStorage.getItem(KEY)) { $("startbox").hidden = true; connect(null); }
})();
</script>
</body>
</html>
"""


def render_page(nonce: str, languages: list[str], city: str, max_chars: int = 2000) -> str:
    options = "".join(
        f'<option value="{html.escape(code)}">{html.escape(LANGUAGE_NAMES.get(code, code))}'
        "</option>"
        for code in languages
    )
    texts = {code: TEXTS[code] for code in languages if code in TEXTS}
    # JSON inside <script>: "<" escaped so no text can close the element
    texts_js = json.dumps(texts, ensure_ascii=False).replace("<", "\\u003c")
    return (
        _TEMPLATE.replace("__TITLE__", html.escape(f"{city} - chat"))
        .replace("__OPTIONS__", options)
        .replace("__MAXLEN__", str(int(max_chars)))
        .replace("__NONCE__", html.escape(nonce))
        .replace("__TEXTS__", texts_js)
    )
