// The console's shared behaviour (no inline script anywhere: the CSP forbids it).
// - `consoleFetch(url, options)`: fetch with the page's CSRF token in `X-CSRF-Token`.
// - A form with `data-confirm="question"` asks before it submits.
// - For owners and agents, `window.consoleInbox`: the stream of the tenant's inbox events; a new escalation shows
//   as a count on the Inbox link and in the tab's title until someone takes it.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const token = meta ? meta.getAttribute("content") : "";
  window.consoleFetch = function (url, options) {
    const opts = Object.assign({credentials: "same-origin"}, options || {});
    opts.headers = Object.assign({"X-CSRF-Token": token, "Accept": "application/json"}, opts.headers || {});
    return fetch(url, opts);
  };
  const role = document.querySelector('meta[name="console-role"]');
  if (role && (role.content === "owner" || role.content === "agent")) {
    const link = document.querySelector('.nav a[href="/console/inbox"]');
    const title = document.title;
    const waiting = new Set();
    const events = window.consoleInbox = new EventSource("/console/inbox/events");
    events.addEventListener("inbox", function (e) {
      const f = JSON.parse(e.data);
      if (f.what === "escalated" || f.what === "released") waiting.add(f.conversation_id);
      else if (f.what !== "message") waiting.delete(f.conversation_id);
      let count = link && link.querySelector(".count");
      if (link && !count) {
        count = link.appendChild(document.createElement("span"));
        count.className = "count";
      }
      if (count) {
        count.textContent = waiting.size ? String(waiting.size) : "";
        count.hidden = !waiting.size;
        link.setAttribute("aria-label", waiting.size ? "Inbox, " + waiting.size + " new waiting" : "Inbox");
      }
      document.title = (waiting.size ? "(" + waiting.size + ") " : "") + title;
    });
  }
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();
