// The inbox (no inline script: the CSP forbids it).
// - The queue page refreshes its list on every inbox event, and on a new escalation plays a sound and shows a
//   browser notification when the agent asked for them (kept in localStorage).
// - A conversation page streams the conversation (`/console/inbox/{id}/events`): the visitor's messages, the
//   bot's replies, the agents' messages and notes, the visitor typing, coming and going; the reply box sends, adds notes, tells the
//   visitor the agent is typing; Alt+C claim, Alt+M message, Alt+N note, Alt+R resolve, Alt+J next waiting.
"use strict";
(function () {
  const list = document.getElementById("inbox-list");
  const takeover = document.getElementById("takeover");

  function beep() {
    try {
      const ctx = new AudioContext();
      const osc = ctx.createOscillator();
      osc.frequency.value = 880;
      osc.connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.15);
    } catch (e) { /* no audio here */ }
  }

  function toggle(id, key, onEnable) {
    const box = document.getElementById(id);
    if (!box) return;
    box.checked = localStorage.getItem(key) === "1";
    box.addEventListener("change", function () {
      localStorage.setItem(key, box.checked ? "1" : "0");
      if (box.checked && onEnable) onEnable(box);
    });
  }

  if (list) {
    toggle("alert-sound", "inbox-sound");
    toggle("alert-notify", "inbox-notify", function (box) {
      if (!("Notification" in window)) { box.checked = false; return; }
      Notification.requestPermission().then(function (p) { if (p !== "granted") box.checked = false; });
    });
    const live = document.getElementById("inbox-live");
    let pending = null;
    const refresh = function () {  // at most twice a second, however many events come
      if (pending) return;
      pending = setTimeout(function () {
        pending = null;
        fetch(list.dataset.refresh, {credentials: "same-origin"}).then(function (r) {
          return r.ok ? r.text() : null;
        }).then(function (html) { if (html !== null) list.innerHTML = html; });  // our own escaped page
      }, 500);
    };
    // console.js holds the console's one stream of inbox events (it ran by the time the document is loaded)
    document.addEventListener("DOMContentLoaded", function () {
      if (!window.consoleInbox) return;
      window.consoleInbox.addEventListener("inbox", onInbox);
      window.consoleInbox.addEventListener("ready", refresh);  // (re)connected: what came meanwhile
    });
    const onInbox = function (e) {
      const frame = JSON.parse(e.data);
      refresh();
      if (frame.what !== "escalated") return;
      live.textContent = "A visitor is waiting for a person.";
      if (localStorage.getItem("inbox-sound") === "1") beep();
      if (localStorage.getItem("inbox-notify") === "1" && "Notification" in window &&
          Notification.permission === "granted") {
        new Notification("A visitor is waiting for a person", {body: frame.reason || ""});
      }
    };
  }

  if (!takeover) return;
  const id = takeover.dataset.conversation;
  const holder = takeover.dataset.holder === "yes";
  const messages = document.getElementById("messages");
  const form = document.getElementById("reply");
  const text = document.getElementById("reply-text");
  const problem = document.getElementById("reply-error");
  const typingNote = document.getElementById("visitor-typing");
  const presence = document.getElementById("presence");
  const draftKey = "inbox-draft:" + id;
  let visitorTyping = null;

  function add(messageId, role, who, body, note) {
    if (messageId && document.getElementById("m-" + messageId)) return null;  // shown already (page or replay)
    const li = document.createElement("li");
    if (messageId) li.id = "m-" + messageId;
    li.className = "message role-" + role + (note ? " note" : "");
    const meta = li.appendChild(document.createElement("p"));
    meta.className = "meta";
    meta.appendChild(document.createElement("strong")).textContent = who;
    if (note) {
      const b = meta.appendChild(document.createElement("span"));
      b.className = "badge";
      b.textContent = "internal note";
    }
    const p = li.appendChild(document.createElement("p"));
    p.className = "text";
    p.textContent = body;
    messages.appendChild(li);
    return p;
  }

  function reply(messageId) {
    const found = document.getElementById("m-" + messageId);
    return found ? found.querySelector(".text") : add(messageId, "persona", takeover.dataset.persona, "", false);
  }

  function showTyping(active) {
    clearTimeout(visitorTyping);
    typingNote.hidden = !active;
    if (active) visitorTyping = setTimeout(function () { typingNote.hidden = true; }, 6000);
  }

  const stream = new EventSource("/console/inbox/" + id + "/events?after=" + takeover.dataset.after);
  stream.addEventListener("conversation", function (e) {
    const f = JSON.parse(e.data);
    if (f.type === "message.accepted") { add(f.message_id, "visitor", "Visitor", f.text, false); showTyping(false); }
    else if (f.type === "reply.start") reply(f.message_id);
    else if (f.type === "reply.delta") { const t = reply(f.message_id); if (t) t.textContent += f.text; }
    else if (f.type === "guardrail") { const t = reply(f.message_id); if (t) t.textContent = f.text; }
    else if (f.type === "agent.message") add(f.message_id, "agent", (f.agent && f.agent.name) || "Agent", f.text, false);
    else if (f.type === "escalation") {  // (only what came after the page was made is streamed)
      if (text && text.value) sessionStorage.setItem(draftKey, text.value);
      location.reload();  // who holds it changed: the page's actions follow
    }
  });
  stream.addEventListener("agents", function (e) {
    const f = JSON.parse(e.data);
    if (f.type === "note") add(f.message_id, "agent", (f.agent && f.agent.name) || "Agent", f.text, true);
    else if (f.type === "typing" && f.who === "visitor") showTyping(f.active === true);
    else if (f.type === "presence" && presence) {
      presence.className = "presence " + (f.online ? "here" : "gone");
      presence.textContent = f.online ? "here" : "left just now";
      if (!f.online) showTyping(false);
    }
  });
  stream.addEventListener("reload", function () { location.reload(); });

  let sentTyping = 0;
  let stopTyping = null;
  function typing(active) {
    if (!holder) return;
    clearTimeout(stopTyping);
    const now = Date.now();
    if (active) stopTyping = setTimeout(function () { typing(false); }, 3000);
    if (active ? now - sentTyping > 2000 : sentTyping) {
      sentTyping = active ? now : 0;
      consoleFetch("/console/inbox/" + id + "/typing", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({active: active})});
    }
  }

  function send(internal) {
    const value = text.value;
    if (!value.trim()) return;
    problem.textContent = "";
    consoleFetch("/console/inbox/" + id + "/messages", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({text: value, internal: internal})})
      .then(function (r) {
        if (r.ok) {
          text.value = "";
          sessionStorage.removeItem(draftKey);
          typing(false);
          return null;
        }
        return r.json().then(function (body) { problem.textContent = body.error ? body.error.message : "Not sent."; });
      }).catch(function () { problem.textContent = "Not sent: the server could not be reached."; });
  }

  // Canned replies: "/" and the start of a shortcut lists the matches; arrows choose, Enter or Tab inserts.
  const cannedList = document.getElementById("canned-list");
  const options = cannedList ? Array.from(cannedList.querySelectorAll("[role=option]")) : [];
  let chosen = -1;
  function matches() {
    const m = /^\/([a-z0-9_-]*)$/.exec(text.value);
    return m ? options.filter(function (o) { return o.dataset.shortcut.startsWith(m[1]); }) : [];
  }
  function showCanned() {
    const found = matches();
    options.forEach(function (o) { o.hidden = found.indexOf(o) < 0; o.setAttribute("aria-selected", "false"); });
    chosen = found.length ? Math.min(Math.max(chosen, 0), found.length - 1) : -1;
    if (chosen >= 0) found[chosen].setAttribute("aria-selected", "true");
    cannedList.hidden = !found.length;
    if (chosen >= 0) text.setAttribute("aria-activedescendant", found[chosen].id);
    else text.removeAttribute("aria-activedescendant");
    return found;
  }
  function insert(option) {
    text.value = option.dataset.text;
    chosen = -1;
    showCanned();
    text.focus();
  }
  options.forEach(function (o) { o.addEventListener("mousedown", function (e) { e.preventDefault(); insert(o); }); });

  if (form) {
    text.value = sessionStorage.getItem(draftKey) || "";
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      send(!holder || (e.submitter && e.submitter.value === "1"));
    });
    text.addEventListener("keydown", function (e) {
      const found = cannedList && !cannedList.hidden ? matches() : [];
      if (found.length && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
        e.preventDefault();
        chosen = (chosen + (e.key === "ArrowDown" ? 1 : found.length - 1)) % found.length;
        showCanned();
        return;
      }
      if (found.length && chosen >= 0 && (e.key === "Enter" || e.key === "Tab") && !e.shiftKey) {
        e.preventDefault();
        insert(found[chosen]);
        return;
      }
      if (found.length && e.key === "Escape") { cannedList.hidden = true; return; }
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(!holder); }
    });
    text.addEventListener("input", function () {
      typing(!!text.value && text.value[0] !== "/");
      if (cannedList) { chosen = 0; showCanned(); }
    });
  }

  document.addEventListener("keydown", function (e) {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    const key = e.key.toLowerCase();
    if (key === "j") { e.preventDefault(); location.href = "/console/inbox/next"; return; }
    if (key === "m" && text) { e.preventDefault(); text.focus(); return; }
    if (key === "n" && text) { e.preventDefault(); send(true); return; }
    const button = document.querySelector('#controls button[data-key="' + key + '"]');
    if (button) { e.preventDefault(); button.click(); }
  });
})();
