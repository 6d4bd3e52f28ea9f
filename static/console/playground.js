// The playground: a turn is a POST to /console/playground/turn (consoleFetch: the CSRF header) read as a stream
// of Server-Sent Events, shown as it comes, then its decision trace. Untrusted text (messages, persona fields,
// rule reasons) only ever goes into the page as text nodes: never innerHTML.
"use strict";
(function () {
  const root = document.getElementById("playground");
  if (!root) return;
  const personaId = root.dataset.persona;
  const personaName = root.dataset.personaName || "Persona";
  const status = document.getElementById("status");
  const form = document.getElementById("composer");
  const input = document.getElementById("message");
  const send = document.getElementById("send");
  const fields = ["system_prompt", "greeting", "topics", "policy"];
  const columns = {};
  document.querySelectorAll("#columns .column").forEach(function (el) {
    columns[el.dataset.variant] = {el: el, list: el.querySelector(".messages"), conversation: null, turns: []};
  });

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  // Spans count code points (as the server does), not UTF-16 units.
  function marked(text, spans) {
    const chars = Array.from(text || "");
    const out = document.createDocumentFragment();
    let at = 0;
    (spans || []).slice().sort(function (a, b) { return a.start - b.start; }).forEach(function (s) {
      if (s.start < at || s.end > chars.length) return;
      out.appendChild(document.createTextNode(chars.slice(at, s.start).join("")));
      const m = el("mark", {class: "masked", title: "masked: " + s.reason, text: chars.slice(s.start, s.end).join("")});
      out.appendChild(m);
      out.appendChild(el("span", {class: "sr-only", text: " (masked: " + s.reason + ")"}));
      at = s.end;
    });
    out.appendChild(document.createTextNode(chars.slice(at).join("")));
    return out;
  }

  function mode() {
    const checked = document.querySelector('input[name="mode"]:checked');
    return checked ? checked.value : "saved";
  }

  function variants() {
    const m = mode();
    return m === "compare" ? ["saved", "draft"] : [m];
  }

  function showColumns() {
    const shown = variants();
    Object.keys(columns).forEach(function (v) { columns[v].el.hidden = shown.indexOf(v) < 0; });
    document.getElementById("columns").classList.toggle("compare", shown.length > 1);
    document.getElementById("case-from").value = shown[shown.length - 1];
  }

  function draft() {
    const out = {};
    fields.forEach(function (f) { out[f] = document.getElementById("draft-" + f).value; });
    return out;
  }

  function clearDraftErrors() {
    fields.forEach(function (f) {
      document.getElementById("draft-" + f).removeAttribute("aria-invalid");
      document.getElementById("draft-" + f + "-error").textContent = "";
    });
  }

  function showError(body, fallback) {
    const err = (body && body.error) || body || {};
    const details = err.details || {};
    const message = err.message || fallback;
    if (details.draft && fields.indexOf(details.draft) >= 0) {
      const box = document.getElementById("draft-" + details.draft);
      const where = document.getElementById("draft-" + details.draft + "-error");
      box.setAttribute("aria-invalid", "true");
      const listed = (details.errors || []).map(function (e) { return e.field + ": " + e.message; });
      where.textContent = listed.length ? listed.join("; ") : message;
      document.getElementById("draft").open = true;
    }
    status.textContent = message;
    status.classList.add("error");
  }

  function row(label, value) {
    return el("tr", {}, [el("th", {scope: "row", text: label}), el("td", {text: String(value)})]);
  }

  function topicsTrace(t) {
    const box = el("div", {class: "trace-topics"});
    if (!t) {
      box.appendChild(el("p", {class: "hint", text: "Topics: not read (no topics, or a rule decided first)."}));
      return box;
    }
    const th = t.thresholds || {};
    box.appendChild(el("p", {}, [el("strong", {text: "Topics: "}), t.verdict + (t.topic ? " (" + t.topic + ")" : "") +
      ", read on the " + t.reading + " with " + t.encoder + "; best allowed score " + t.allowed.toFixed(3) +
      (th.off_topic !== null && th.off_topic !== undefined ? " against the off-topic threshold " + th.off_topic.toFixed(3) : " (too few examples to judge off-topic)")]));
    const body = el("tbody");
    (t.allowed_topics || []).forEach(function (a) {
      const below = th.off_topic !== null && th.off_topic !== undefined && a.score < th.off_topic;
      body.appendChild(el("tr", {}, [el("td", {text: a.id}), el("td", {text: "allowed"}), el("td", {text: a.score.toFixed(3)}),
        el("td", {text: th.off_topic !== null && th.off_topic !== undefined ? (below ? "below " : "at or above ") + "off-topic " + th.off_topic.toFixed(3) : "n/a"})]));
    });
    (t.denied_topics || []).forEach(function (d) {
      const rule = d.pair === null ? "closest ≥ " + th.deny_single : "closest ≥ " + th.deny_close + " or pair ≥ " + th.deny_pair;
      body.appendChild(el("tr", {}, [el("td", {text: d.id}), el("td", {text: "denied"}),
        el("td", {text: d.closest.toFixed(3) + (d.pair === null ? "" : " (pair " + d.pair.toFixed(3) + ")")}),
        el("td", {text: rule + ", and ≥ allowed + " + th.deny_margin})]));
    });
    if (body.children.length) {
      const table = el("table", {class: "scores"}, [
        el("caption", {text: "Topic scores"}),
        el("thead", {}, [el("tr", {}, ["Topic", "Kind", "Score", "Compared with"].map(function (h) { return el("th", {scope: "col", text: h}); }))]),
        body]);
      box.appendChild(el("div", {class: "table-wrap"}, [table]));
    }
    return box;
  }

  function traceView(t) {
    const details = el("details", {class: "trace", open: ""});
    details.appendChild(el("summary", {text: "Decision trace"}));
    const rules = el("ul", {class: "rules"});
    (t.rules || []).forEach(function (r) {
      rules.appendChild(el("li", {}, [el("span", {class: "badge " + r.action, text: r.action}), " ",
        el("code", {text: r.reason || "(none)"}), " on the " + r.source +
        (r.spans && r.spans.length ? " (" + r.spans.length + " span" + (r.spans.length > 1 ? "s" : "") + " masked)" : "")]));
    });
    if (!rules.children.length) rules.appendChild(el("li", {text: "No rule fired."}));
    details.appendChild(el("p", {}, [el("strong", {text: "Rules that fired"})]));
    details.appendChild(rules);
    details.appendChild(topicsTrace(t.topics));
    const facts = el("tbody", {}, [
      row("Model called", t.provider_called ? "yes (" + (t.model || "?") + ")" : "no"),
      row("Finish", t.finish_reason),
      row("Time to first token", t.timing.ttft_ms === null ? "none" : t.timing.ttft_ms + " ms"),
      row("Total time", t.timing.total_ms + " ms"),
      row("Tokens", t.usage.input_tokens + " in, " + t.usage.output_tokens + " out")]);
    if (t.error) facts.appendChild(row("Error", t.error.code + ": " + t.error.message));
    details.appendChild(el("div", {class: "table-wrap"}, [el("table", {class: "facts"}, [el("caption", {text: "The turn"}), facts])]));
    return details;
  }

  function addVisitor(col, text) {
    const item = el("li", {class: "msg visitor"}, [el("p", {class: "who", text: "You"})]);
    const body = el("p", {class: "text"}, [text]);
    item.appendChild(body);
    col.list.appendChild(item);
    return {item: item, body: body};
  }

  function addReply(col) {
    const item = el("li", {class: "msg persona", "aria-busy": "true"}, [el("p", {class: "who", text: personaName})]);
    const body = el("p", {class: "text"});
    item.appendChild(body);
    col.list.appendChild(item);
    return {item: item, body: body};
  }

  function parseEvents(buffer, handle) {
    let at;
    while ((at = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const data = chunk.split("\n").filter(function (l) { return l.indexOf("data:") === 0; })
        .map(function (l) { return l.slice(5).trim(); }).join("\n");
      if (data) handle(JSON.parse(data));
    }
    return buffer;
  }

  async function runTurn(variant, text) {
    const col = columns[variant];
    const body = {persona: personaId, message: text, conversation_id: col.conversation};
    if (variant === "draft") body.draft = draft();
    const greeting = variant === "draft" ? document.getElementById("draft-greeting").value : root.dataset.greeting;
    if (!col.list.children.length && greeting) {
      col.list.appendChild(el("li", {class: "msg persona greeting"}, [el("p", {class: "who", text: personaName + " (greeting)"}),
        el("p", {class: "text", text: greeting})]));
    }
    const visitor = addVisitor(col, text);
    const reply = addReply(col);
    const turn = {visitor: text, text: "", trace: null, visitorView: visitor, replyView: reply};
    const response = await window.consoleFetch("/console/playground/turn", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    if (!response.ok || !response.body) {
      let parsed = null;
      try { parsed = await response.json(); } catch (e) { parsed = null; }
      visitor.item.remove(); reply.item.remove();
      showError(parsed, "the turn could not run (" + response.status + ")");
      return null;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    function handle(frame) {
      if (frame.type === "conversation") col.conversation = frame.conversation_id;
      else if (frame.type === "message.accepted") turn.shown = frame.text;
      else if (frame.type === "reply.delta") { turn.text += frame.text; reply.body.textContent = turn.text; }
      else if (frame.type === "guardrail") { turn.text = frame.text; reply.body.textContent = frame.text; }
      else if (frame.type === "escalation") reply.item.appendChild(el("p", {class: "hint", text: "Escalation: " + frame.status}));
      else if (frame.type === "error") reply.item.appendChild(el("p", {class: "error", text: "Error: " + frame.message}));
      else if (frame.type === "trace") turn.trace = frame;
    }
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buffer = parseEvents(buffer + decoder.decode(chunk.value, {stream: true}), handle);
    }
    reply.item.removeAttribute("aria-busy");
    if (turn.trace) {
      const inputSpans = [];
      turn.trace.rules.forEach(function (r) {
        if (r.source === "input" && r.spans) r.spans.forEach(function (s) { inputSpans.push({start: s.start, end: s.end, reason: r.reason}); });
      });
      if (inputSpans.length) {
        visitor.body.textContent = "";
        visitor.body.appendChild(marked(text, inputSpans));
      }
      if (turn.shown && turn.shown !== text) visitor.item.appendChild(el("p", {class: "hint", text: "Stored and sent as: " + turn.shown}));
      if (turn.trace.output_spans.length) {
        reply.body.textContent = "";
        reply.body.appendChild(marked(turn.text, turn.trace.output_spans));
      }
      reply.item.appendChild(traceView(turn.trace));
      col.turns.push(turn);
    }
    return turn;
  }

  function decisions(t) {
    return (t.trace ? t.trace.rules : []).map(function (r) { return r.action + " " + r.reason + " (" + r.source + ")"; }).sort().join(", ");
  }

  function compare(saved, drafted) {
    if (!saved || !drafted || !saved.trace || !drafted.trace) return;
    const what = [];
    if (saved.text !== drafted.text) what.push("the text");
    if (decisions(saved) !== decisions(drafted)) what.push("the decisions (saved: " + (decisions(saved) || "none") + "; draft: " + (decisions(drafted) || "none") + ")");
    [saved, drafted].forEach(function (t) {
      const note = what.length ? "Differs from the other version: " + what.join(" and ") : "Same text and decisions in both versions";
      t.replyView.item.classList.add(what.length ? "differs" : "same");
      t.replyView.item.appendChild(el("p", {class: what.length ? "diff" : "hint", text: note}));
    });
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) { status.textContent = "Write a message first."; return; }
    status.textContent = "Sending…";
    status.classList.remove("error");
    clearDraftErrors();
    send.disabled = true;
    try {
      const which = variants();
      const done = await Promise.all(which.map(function (v) { return runTurn(v, text); }));
      if (which.length === 2) compare(done[0], done[1]);
      if (done.every(function (t) { return t; })) {
        input.value = "";
        status.textContent = "Reply complete.";
      }
    } catch (e) {
      status.textContent = "The connection failed: " + e.message;
      status.classList.add("error");
    } finally {
      send.disabled = false;
    }
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });

  document.getElementById("restart").addEventListener("click", function () {
    Object.keys(columns).forEach(function (v) { columns[v].conversation = null; columns[v].turns = []; columns[v].list.textContent = ""; });
    status.textContent = "A new conversation starts with your next message.";
  });

  document.getElementById("draft-reset").addEventListener("click", function () {
    fields.forEach(function (f) { const box = document.getElementById("draft-" + f); box.value = box.dataset.saved || ""; });
    clearDraftErrors();
    status.textContent = "The draft is the saved version again.";
  });

  document.querySelectorAll('input[name="mode"]').forEach(function (r) { r.addEventListener("change", showColumns); });
  showColumns();

  document.getElementById("save-case").addEventListener("submit", async function (event) {
    event.preventDefault();
    const out = document.getElementById("save-status");
    out.textContent = "";
    out.classList.remove("error");
    const col = columns[document.getElementById("case-from").value];
    if (!col.turns.length) { out.textContent = "Chat first: that column has no exchange to save."; out.classList.add("error"); return; }
    const body = {persona: personaId, name: document.getElementById("case-name").value,
                  turns: col.turns.map(function (t) { return {visitor: t.visitor, expect: t.trace.expect}; })};
    const response = await window.consoleFetch("/console/playground/cases", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    let parsed = null;
    try { parsed = await response.json(); } catch (e) { parsed = null; }
    if (response.status !== 201) {
      out.textContent = ((parsed && parsed.error && parsed.error.message) || "not saved (" + response.status + ")");
      out.classList.add("error");
      return;
    }
    out.appendChild(document.createTextNode("Saved “" + parsed.name + "”: "));
    out.appendChild(el("a", {href: parsed.url, text: "open it on the Tests page"}));
  });
})();
