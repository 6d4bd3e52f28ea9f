/**
 * widget_server embed: one script tag gives a page a streaming, resumable chat with a persona.
 *
 *   <script src="https://HOST/embed.js" data-key="pk_…" data-persona="SLUG" async></script>
 *
 * Options are data-* attributes (key, persona, position, accent, title, open, lang, z-index, nonce) or the
 * object given to `PersonaWidget.init(options)`. Calls made before this script loads are queued in
 * `window.PersonaWidget.q` as `['init', options, callback]`. No cookie is set; the session token stays in
 * memory; the visitor and conversation ids live in localStorage, namespaced per key and persona.
 * Everything the page sees is in a Shadow DOM; untrusted text only ever becomes text nodes.
 */
(function (w, d) {
  'use strict';

  var me = d.currentScript;
  var NS = 'persona-widget:';
  var MAX = 4000;
  var LOGGED = {'message.accepted': 1, 'reply.start': 1, 'reply.delta': 1, 'reply.end': 1, guardrail: 1,
    escalation: 1, 'agent.message': 1};
  var K = ['open', 'close', 'msg', 'send', 'typing', 'offline', 'retry', 'origin', 'gone', 'elsewhere', 'error',
    'left', 'up', 'down', 'failed', 'slow', 'requested', 'agent_joined', 'agent_left', 'closed', 'unread', 'stopped'];
  var STR = {
    en: ['Open chat', 'Close chat', 'Message', 'Send', 'Typing…', 'Offline. Reconnecting…', 'Retry',
      'This chat is not enabled for this website.', 'This chat is no longer available.',
      'This conversation continues in another window.', 'Something went wrong.', 'characters left', 'Helpful',
      'Not helpful', 'The reply failed.', 'Too many messages. Please wait a moment.',
      'Connecting you with a person…', 'A person joined the chat.', 'The person left the chat.',
      'The conversation was closed.', 'unread', '(stopped)'],
    de: ['Chat öffnen', 'Chat schließen', 'Nachricht', 'Senden', 'Schreibt…', 'Offline. Verbinde neu…',
      'Erneut versuchen', 'Dieser Chat ist für diese Website nicht freigeschaltet.',
      'Dieser Chat ist nicht mehr verfügbar.', 'Dieses Gespräch läuft in einem anderen Fenster weiter.',
      'Etwas ist schiefgelaufen.', 'Zeichen übrig', 'Hilfreich', 'Nicht hilfreich',
      'Die Antwort ist fehlgeschlagen.', 'Zu viele Nachrichten. Bitte kurz warten.',
      'Ich verbinde Sie mit einem Menschen…', 'Eine Person ist dem Chat beigetreten.',
      'Die Person hat den Chat verlassen.', 'Das Gespräch wurde beendet.', 'ungelesen', '(abgebrochen)'],
    es: ['Abrir chat', 'Cerrar chat', 'Mensaje', 'Enviar', 'Escribiendo…', 'Sin conexión. Reconectando…',
      'Reintentar', 'Este chat no está habilitado para este sitio web.', 'Este chat ya no está disponible.',
      'Esta conversación continúa en otra ventana.', 'Algo salió mal.', 'caracteres restantes', 'Útil',
      'No útil', 'La respuesta falló.', 'Demasiados mensajes. Espera un momento.',
      'Te estamos conectando con una persona…', 'Una persona se unió al chat.', 'La persona salió del chat.',
      'La conversación se cerró.', 'sin leer', '(detenido)']
  };
  var CSS = ':host{all:initial!important;display:block!important;position:fixed!important;bottom:0!important;' +
    'right:0!important;width:0!important;height:0!important;z-index:var(--z,2147483000)!important;' +
    'visibility:visible!important;opacity:1!important;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,' +
    'sans-serif!important;color:#1a1a1a!important}' +
    '*{box-sizing:border-box;margin:0;padding:0;font:inherit;color:inherit}[hidden]{display:none!important}' +
    'button{cursor:pointer;background:none;border:0}' +
    'button:focus-visible,textarea:focus-visible,a:focus-visible,.m:focus-visible{outline:2px solid var(--a);' +
    'outline-offset:2px}.h button:focus-visible{outline-color:#fff}' +
    '.l{position:fixed;bottom:20px;right:var(--r,20px);left:var(--x,auto);width:56px;height:56px;' +
    'border-radius:50%;background:var(--a);color:#fff;display:flex;align-items:center;justify-content:center;' +
    'box-shadow:0 4px 14px rgba(0,0,0,.3)}' +
    '.b{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;' +
    'background:#b91c1c;color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center}' +
    '.p{position:fixed;bottom:88px;right:var(--r,20px);left:var(--x,auto);width:380px;' +
    'max-width:calc(100vw - 40px);height:600px;max-height:calc(100vh - 110px);background:#fff;' +
    'border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.3);display:flex;flex-direction:column;overflow:hidden}' +
    '@media (max-width:640px){.p{left:0;right:0;top:var(--vt,0);bottom:auto;width:auto;max-width:none;' +
    'height:var(--vh,100%);max-height:none;border-radius:0}}' +
    '.h{display:flex;align-items:center;gap:10px;padding:12px 14px;background:var(--a);color:#fff}' +
    '.av{width:32px;height:32px;border-radius:50%;background:#fff;color:var(--a);display:flex;' +
    'align-items:center;justify-content:center;font-weight:700;flex:none;overflow:hidden}' +
    '.av img{width:100%;height:100%;object-fit:cover}' +
    '.t{flex:1;font-size:16px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}' +
    '.x{color:#fff;font-size:24px;line-height:1;width:36px;height:36px;border-radius:6px}' +
    '.s{display:flex;gap:8px;align-items:center;padding:8px 14px;background:#fef3c7;font-size:14px}' +
    '.s.e{background:#fee2e2}.s button,.r button.rt{margin-left:auto;padding:3px 10px;' +
    'border:1px solid #1a1a1a;border-radius:6px;font-size:13px}' +
    '.m{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:14px;display:flex;flex-direction:column;gap:8px}' +
    '.r{max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}' +
    '.a{align-self:flex-start;background:#f1f3f5}.v{align-self:flex-end;background:var(--a);color:#fff}' +
    '.q{opacity:.7}.g{align-self:flex-start;background:#fff7ed;border-left:4px solid #b45309}' +
    '.ag{border-left:4px solid #047857;background:#ecfdf5}' +
    '.n{align-self:center;color:#595959;font-size:13px;text-align:center}.e{color:#b91c1c}' +
    '.who{display:block;font-size:12px;font-weight:600;color:#595959}' +
    '.r p+p,.r p+ul,.r p+ol,.r ul+p,.r ol+p,.r pre{margin-top:6px}.r ul,.r ol{padding-left:20px}' +
    '.r a{color:#1d4ed8;text-decoration:underline}' +
    'code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;background:rgba(0,0,0,.07);' +
    'padding:1px 4px;border-radius:4px}pre{background:#1f2937;color:#f9fafb;padding:8px;border-radius:6px;' +
    'overflow-x:auto;white-space:pre}pre code{background:none;padding:0}' +
    '.d i{display:inline-block;width:6px;height:6px;margin:0 2px;border-radius:50%;background:#595959;' +
    'animation:k 1s infinite}.d i+i{animation-delay:.2s}.d i+i+i{animation-delay:.4s}' +
    '@keyframes k{0%,80%,to{opacity:.25}40%{opacity:1}}' +
    '@media (prefers-reduced-motion:reduce){.d i{animation:none}}' +
    '.fb{display:flex;gap:4px;margin-top:6px}.fb button{display:flex;padding:3px 6px;border:1px solid #8a8f98;' +
    'border-radius:6px;color:#595959}.fb button[aria-pressed=true]{background:var(--a);border-color:var(--a);' +
    'color:#fff}.fb .dn svg{transform:rotate(180deg)}' +
    '.c{display:flex;flex-wrap:wrap;gap:6px;padding:0 14px 8px}.c button{padding:5px 12px;' +
    'border:1px solid var(--a);border-radius:16px;color:var(--a);font-size:14px;background:#fff}' +
    '.k{padding:0 14px;font-size:12px;color:#595959;text-align:right}.k.e{color:#b91c1c}' +
    '.f{display:flex;gap:8px;align-items:flex-end;padding:10px;border-top:1px solid #e5e7eb}' +
    'textarea{flex:1;resize:none;min-height:40px;max-height:120px;padding:8px 10px;font-size:16px;' +
    'line-height:1.4;border:1px solid #8a8f98;border-radius:8px;background:#fff;color:#1a1a1a}' +
    'textarea::placeholder{color:#6b7280;opacity:1}' +
    '.sd{width:40px;height:40px;border-radius:8px;background:var(--a);color:#fff;display:flex;' +
    'align-items:center;justify-content:center;flex:none}.sd:disabled{opacity:.5;cursor:default}' +
    '.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}';
  var sheet = null;

  /** @returns {Element} */
  function el(tag, cls, text) {
    var e = d.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function svg(path, size) {
    var s = d.createElementNS('http://www.w3.org/2000/svg', 'svg');
    var p = d.createElementNS('http://www.w3.org/2000/svg', 'path');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('width', size);
    s.setAttribute('height', size);
    s.setAttribute('aria-hidden', 'true');
    p.setAttribute('d', path);
    p.setAttribute('fill', 'currentColor');
    s.appendChild(p);
    return s;
  }

  function txt(t) { return d.createTextNode(t); }

  function log(level, msg) { (console[level] || console.log)('[widget] ' + msg); }

  function link(u) {
    try {
      var x = new URL(u);
      return /^https?:$/.test(x.protocol) ? x.href : '';
    } catch (e) { return ''; }
  }

  var INLINE = /(`+)([^`]+?)\1|\*\*(.+?)\*\*|\*([^*\s][^*]*?)\*|\[([^\]]+)\]\(([^)\s]+)\)/;

  /** Inline markdown (code, bold, italic, http(s) links) as DOM nodes: never through HTML. */
  function inline(text, into) {
    var m, n;
    while ((m = INLINE.exec(text))) {
      if (m.index) into.appendChild(txt(text.slice(0, m.index)));
      if (m[2] != null) n = el('code', '', m[2]);
      else if (m[3] != null) inline(m[3], n = el('strong'));
      else if (m[4] != null) inline(m[4], n = el('em'));
      else if (link(m[6])) {
        n = el('a');
        n.href = link(m[6]);
        n.target = '_blank';
        n.rel = 'noopener noreferrer';
        inline(m[5], n);
      } else n = txt(m[0]);
      into.appendChild(n);
      text = text.slice(m.index + m[0].length);
    }
    if (text) into.appendChild(txt(text));
  }

  /** A small markdown subset: paragraphs, code blocks, lists, and the inline forms above. */
  function md(src, into) {
    var lines = src.split('\n'), i = 0, list = null, para = null, m, l, code;
    while (i < lines.length) {
      l = lines[i++];
      if (/^\s*```/.test(l)) {
        code = [];
        while (i < lines.length && !/^\s*```/.test(lines[i])) code.push(lines[i++]);
        i++;
        into.appendChild(el('pre')).appendChild(el('code', '', code.join('\n')));
        list = para = null;
      } else if ((m = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(l))) {
        var tag = /\d/.test(m[1]) ? 'OL' : 'UL';
        if (!list || list.tagName !== tag) list = into.appendChild(el(tag));
        inline(m[2], list.appendChild(el('li')));
        para = null;
      } else if (!l.trim()) {
        list = para = null;
      } else {
        if (para) para.appendChild(txt('\n'));
        else para = into.appendChild(el('p'));
        inline(l, para);
        list = null;
      }
    }
  }

  function store(k, v) {
    try {
      if (v === undefined) return JSON.parse(w.localStorage.getItem(k) || '{}');
      w.localStorage.setItem(k, JSON.stringify(v));
    } catch (e) { return {}; }
  }

  /**
   * One chat widget. Create it with `PersonaWidget.init(options)`.
   * @param {Object} o options: key, persona, position ('right'|'left'), accent, title, open, lang, zIndex, nonce
   */
  function Widget(o) {
    var s = this, lang = (o.lang || navigator.language || 'en').slice(0, 2).toLowerCase();
    s.o = o;
    s.t = {};
    K.forEach(function (k, i) { s.t[k] = (STR[lang] || STR.en)[i]; });
    s.h = {};
    s.m = {};
    s.p = {};
    s.out = [];
    s.seq = 0;
    s.tries = 0;
    s.unread = 0;
    s.sk = NS + o.key + ':' + o.persona;
    var saved = store(s.sk);
    s.vid = saved.v;
    s.cid = saved.c;
    s.had = saved.n;
    s.build();
    s.wake = function () { s.kick(); };
    w.addEventListener('online', s.wake);
    s.beat = setInterval(function () {
      if (!s.ready) return;
      if (Date.now() - s.rx > 60000) s.drop();  // no pong for two beats: the connection is dead
      else s.tx({type: 'ping'});
    }, 25000);
    s.connect();
    if (o.open === true || o.open === 'true' || o.open === '') s.open();
  }

  var P = Widget.prototype;

  P.build = function () {
    var s = this, t = s.t, o = s.o;
    var host = s.host = d.createElement('persona-widget');
    var root = host.attachShadow({mode: 'open'});
    if (o.accent && w.CSS && CSS.supports('color', o.accent)) host.style.setProperty('--a', o.accent);
    else host.style.setProperty('--a', '#1d4ed8');
    if (o.zIndex) host.style.setProperty('--z', String(parseInt(o.zIndex, 10) || 2147483000));
    if (o.position === 'left') {
      host.style.setProperty('--r', 'auto');
      host.style.setProperty('--x', '20px');
    }
    try {
      sheet = sheet || new CSSStyleSheet();
      if (!sheet.cssRules.length) sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch (e) {
      var st = el('style', '', CSS);
      if (o.nonce) st.nonce = o.nonce;
      root.appendChild(st);
    }
    var l = s.launcher = root.appendChild(el('button', 'l'));
    l.type = 'button';
    l.setAttribute('aria-expanded', 'false');
    l.setAttribute('aria-controls', 'p');
    l.appendChild(svg('M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z', 28));
    s.badge = l.appendChild(el('span', 'b'));
    s.badge.hidden = true;
    s.badge.setAttribute('aria-hidden', 'true');
    l.onclick = function () { s.toggle(); };

    var p = s.panel = root.appendChild(el('div', 'p'));
    p.id = 'p';
    p.hidden = true;
    p.setAttribute('role', 'dialog');
    p.setAttribute('aria-labelledby', 't');
    p.onkeydown = function (e) { if (e.key === 'Escape') { e.preventDefault(); s.close(); } };
    var h = p.appendChild(el('div', 'h'));
    s.av = h.appendChild(el('span', 'av'));
    s.av.setAttribute('aria-hidden', 'true');
    s.title = h.appendChild(el('h2', 't', o.title || ''));
    s.title.id = 't';
    var x = h.appendChild(el('button', 'x', '×'));
    x.type = 'button';
    x.setAttribute('aria-label', t.close);
    x.onclick = function () { s.close(); };
    s.bar = p.appendChild(el('div', 's'));
    s.bar.setAttribute('role', 'status');
    s.bar.hidden = true;
    s.list = p.appendChild(el('div', 'm'));
    s.list.tabIndex = 0;
    s.list.setAttribute('aria-labelledby', 't');
    s.greet = s.list.appendChild(el('div', 'r a'));
    s.greet.hidden = true;
    s.chips = p.appendChild(el('div', 'c'));
    s.count = p.appendChild(el('div', 'k'));
    s.count.hidden = true;
    s.count.id = 'k';
    var f = p.appendChild(el('form', 'f'));
    var lab = f.appendChild(el('label', 'sr', t.msg));
    lab.htmlFor = 'i';
    var ta = s.input = f.appendChild(el('textarea'));
    ta.id = 'i';
    ta.rows = 1;
    ta.maxLength = MAX;
    ta.placeholder = t.msg + '…';
    ta.setAttribute('enterkeyhint', 'send');
    ta.setAttribute('aria-describedby', 'k');
    var sd = s.sendBtn = f.appendChild(el('button', 'sd'));
    sd.setAttribute('aria-label', t.send);
    sd.appendChild(svg('M3 20l18-8L3 4v6l12 2-12 2z', 20));
    ta.onkeydown = function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    };
    ta.oninput = function () {
      var left = MAX - ta.value.length;
      ta.style.height = 'auto';
      ta.style.height = Math.min(ta.scrollHeight + 2, 120) + 'px';
      s.count.hidden = left > 400;
      s.count.textContent = left + ' ' + t.left;
      s.count.className = left < 100 ? 'k e' : 'k';
    };
    function submit() {
      if (s.send(ta.value)) {
        ta.value = '';
        ta.oninput();
      }
    }
    f.onsubmit = function (e) { e.preventDefault(); submit(); };
    s.live = p.appendChild(el('div', 'sr'));
    s.live.setAttribute('aria-live', 'polite');
    s.fit = function () {
      var v = w.visualViewport;
      if (v) {
        host.style.setProperty('--vh', v.height + 'px');
        host.style.setProperty('--vt', v.offsetTop + 'px');
      }
    };
    if (w.visualViewport) {
      w.visualViewport.addEventListener('resize', s.fit);
      w.visualViewport.addEventListener('scroll', s.fit);
    }
    s.label();
    (d.body || d.documentElement).appendChild(host);
  };

  P.label = function () {
    var s = this;
    s.badge.textContent = s.unread;
    s.badge.hidden = !s.unread;
    s.launcher.setAttribute('aria-label', s.t.open + (s.unread ? ' (' + s.unread + ' ' + s.t.unread + ')' : ''));
  };

  /** Show the persona: name, avatar, greeting and starter chips. */
  P.persona = function (pe) {
    var s = this, name = s.o.title || pe.name || '', url = link(pe.avatar_url || '');
    s.name = pe.name || '';
    s.title.textContent = name;
    if (s.av.dataset.u !== url + name) {
      s.av.dataset.u = url + name;
      s.av.textContent = (name || '?').charAt(0).toUpperCase();
      if (url) {
        var img = el('img');
        img.alt = '';
        img.onload = function () { s.av.textContent = ''; s.av.appendChild(img); };
        img.src = url;
      }
    }
    s.greet.textContent = '';
    if (pe.greeting) md(pe.greeting, s.greet);
    s.greet.hidden = !pe.greeting;
    s.chips.textContent = '';
    (pe.starters || []).slice(0, 4).forEach(function (q) {
      var b = s.chips.appendChild(el('button', '', q));
      b.type = 'button';
      b.onclick = function () { s.send(q); };
    });
    s.chipsOff();
  };

  P.chipsOff = function () { this.chips.hidden = this.list.children.length > 1; };

  /** Open the panel and move focus into it. */
  P.open = function () {
    var s = this;
    if (s.isOpen) return;
    s.isOpen = true;
    s.panel.hidden = false;
    s.launcher.setAttribute('aria-expanded', 'true');
    s.unread = 0;
    s.label();
    s.fit();
    s.scroll(true);
    (s.input.disabled ? s.panel.querySelector('button') : s.input).focus();
    if (s.cid || s.ready) s.tx({type: 'event', name: 'widget.opened'});
    s.kick();
    s.emit('open');
  };

  /** Close the panel; focus goes back to the launcher. */
  P.close = function () {
    var s = this;
    if (!s.isOpen) return;
    s.isOpen = false;
    s.panel.hidden = true;
    s.launcher.setAttribute('aria-expanded', 'false');
    s.launcher.focus();
    if (s.ready) s.tx({type: 'event', name: 'widget.closed'});
    s.emit('close');
  };

  P.toggle = function () { if (this.isOpen) this.close(); else this.open(); };

  /**
   * Send a visitor message. Queued while offline, sent once connected.
   * @param {string} text
   * @returns {boolean} whether it was taken
   */
  P.send = function (text) {
    var s = this;
    text = String(text == null ? '' : text);
    if (!text.trim() || text.length > MAX || s.stopped) return false;
    var id = 'c' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    s.p[id] = s.row('v q', text);
    s.last = text;
    s.fresh = true;
    s.tx({type: 'message', client_id: id, text: text});
    s.kick();
    s.scroll(true);
    return true;
  };

  /**
   * Identify the visitor as a user of the site (verified server-side with `hash` when the site requires it).
   * @param {{id: string, name?: string, email?: string, hash?: string}} user
   */
  P.identify = function (user) {
    var s = this;
    s.user = user;
    s.tok = null;
    if (s.ws) s.drop();
  };

  /**
   * Listen to a widget event: ready, open, close, message, reply, guardrail, escalation, error.
   * @returns {function} a function that removes the listener
   */
  P.on = function (name, fn) {
    var hs = this.h[name] = this.h[name] || [];
    hs.push(fn);
    return function () { hs.splice(hs.indexOf(fn) >>> 0, 1); };
  };

  /** Remove the widget from the page and close its connection. */
  P.destroy = function () {
    var s = this, ws = s.ws;
    s.dead = s.stopped = true;
    s.ws = null;
    if (ws) ws.close();
    clearTimeout(s.timer);
    clearInterval(s.beat);
    w.removeEventListener('online', s.wake);
    if (w.visualViewport) {
      w.visualViewport.removeEventListener('resize', s.fit);
      w.visualViewport.removeEventListener('scroll', s.fit);
    }
    s.host.remove();
    API.instances.splice(API.instances.indexOf(s) >>> 0, 1);
  };

  P.emit = function (name, data) {
    var s = this, detail = {instance: s}, k;
    for (k in data) detail[k] = data[k];
    (s.h[name] || []).slice().forEach(function (fn) {
      try { fn(detail); } catch (e) { log('error', 'listener failed: ' + e); }
    });
    [s.o.el, w].forEach(function (t) { if (t) t.dispatchEvent(new CustomEvent(NS + name, {detail: detail})); });
  };

  P.save = function () { store(this.sk, {v: this.vid, c: this.cid, n: this.had}); };

  /** A frame to the server: sent now when connected, else when the next connection is ready. */
  P.tx = function (f) {
    var s = this;
    if (f) s.out.push(f);
    while (s.ready && !s.probe && s.out.length) s.ws.send(JSON.stringify(s.out.shift()));
  };

  /** Connect now if not connected (and not stopped); a pending backoff is cut short. */
  P.kick = function () {
    var s = this;
    if (s.ws || s.busy || s.stopped || s.dead) return;
    clearTimeout(s.timer);
    s.timer = 0;
    s.connect();
  };

  /** Leave the current socket and connect again at once. */
  P.drop = function () {
    var s = this, ws = s.ws;
    s.ws = null;
    s.ready = false;
    if (ws) ws.close();
    s.kick();
  };

  P.connect = function () {
    var s = this;
    if (s.dead || s.ws || s.busy) return;
    s.busy = true;
    clearTimeout(s.timer);
    s.timer = 0;
    (s.tok && Date.now() < s.exp ? Promise.resolve() : s.session()).then(function () {
      s.busy = false;
      // A socket starts a conversation: open one only for a visitor who has one, or writes.
      if (!s.dead && !s.ws && (s.cid || s.out.length)) s.socket();
    }, function (e) {
      s.busy = false;
      if (e.status === 403) s.stop('origin', e.message);
      else if (e.status === 404) s.stop('gone', e.message);
      else if (e.status === 400 || e.status === 401) s.stop('error', e.message);
      else s.retry(e.status === 429 ? 10000 : 0);
    });
  };

  P.session = function () {
    var s = this, body = {key: s.o.key, persona: s.o.persona};
    if (s.vid) body.visitor_id = s.vid;
    if (s.user) body.user = s.user;
    return fetch(s.o.server + '/v1/widget/sessions', {
      method: 'POST', mode: 'cors', credentials: 'omit', headers: {'content-type': 'application/json'},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          var e = new Error((j.error && j.error.message) || 'HTTP ' + r.status);
          e.status = r.status;
          throw e;
        }
        s.tok = j.token;
        s.exp = Date.now() + 600000;
        s.url = j.ws_url;
        s.vid = j.visitor_id;
        s.save();
        if (s.bar.className === 's') s.state(null);
        s.persona(j.persona || {});
      });
    });
  };

  P.socket = function () {
    var s = this, ws = s.ws = new WebSocket(s.url);
    s.rx = Date.now();
    ws.onopen = function () {
      var hello = {type: 'hello', token: s.tok};
      if (s.cid) hello.resume = {conversation_id: s.cid, last_seq: s.full ? -1 : s.seq};
      s.full = false;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = function (e) {
      if (s.ws !== ws) return;
      s.rx = Date.now();
      try { s.frame(JSON.parse(e.data)); } catch (x) { log('warn', 'bad frame: ' + x); }
    };
    ws.onclose = function (e) {
      if (s.ws !== ws) return;
      s.ws = null;
      s.ready = false;
      s.closed(e.code);
    };
  };

  P.closed = function (code) {
    var s = this;
    if (s.dead) return;
    if (code === 4403) return s.stop('origin', 'this page\'s origin is not allowed for this chat (4403)');
    if (code === 4404) return s.stop('gone', 'the persona no longer exists (4404)');
    if (code === 4409) return s.state('elsewhere', 1);
    if (code === 4401) s.tok = null;
    s.retry(code === 4429 ? 30000 : 0);
  };

  /** Reconnect later: exponential backoff with jitter. */
  P.retry = function (min) {
    var s = this, n = s.tries++;
    s.state('offline', 1);
    var wait = Math.max(min, Math.min(30000, 500 * Math.pow(2, n)));
    s.timer = setTimeout(function () { s.connect(); }, wait / 2 + Math.random() * wait / 2);
  };

  /** A state that needs the visitor or the site owner: no automatic reconnect. */
  P.stop = function (kind, why) {
    var s = this;
    s.stopped = kind !== 'error';
    s.input.disabled = s.sendBtn.disabled = s.stopped;
    s.state(kind, kind === 'error');
    log('error', (kind === 'origin' ? location.origin + ': ' : '') + why +
      (kind === 'origin' ? ' (add this origin to the publishable key\'s allowed origins)' : ''));
    s.emit('error', {code: kind, message: why});
  };

  /** The status bar: null hides it; retry adds a button. */
  P.state = function (kind, retry) {
    var s = this, bar = s.bar;
    bar.textContent = '';
    bar.hidden = !kind;
    if (!kind) return;
    bar.className = kind === 'offline' ? 's' : 's e';
    bar.appendChild(el('span', '', s.t[kind]));
    if (retry) {
      var b = bar.appendChild(el('button', '', s.t.retry));
      b.type = 'button';
      b.onclick = function () {
        s.tries = 0;
        s.stopped = false;
        s.input.disabled = s.sendBtn.disabled = false;
        s.state(null);
        s.kick();
      };
    }
  };

  P.row = function (cls, text, before) {
    var s = this, r = el('div', 'r ' + cls);
    if (text != null) r.textContent = text;
    s.list.insertBefore(r, before || null);
    s.chipsOff();
    return r;
  };

  P.scroll = function (force) {
    var l = this.list;
    if (force || l.scrollHeight - l.scrollTop - l.clientHeight < 120) l.scrollTop = l.scrollHeight;
  };

  P.reply = function (id) {
    var s = this, r = s.m[id];
    if (!r) {
      r = s.m[id] = {text: '', row: s.row('a')};
      r.body = r.row.appendChild(el('div', 'bd'));
      r.dots = r.body.appendChild(el('span', 'd'));
      r.dots.setAttribute('aria-label', s.t.typing);
      r.dots.setAttribute('role', 'img');
      r.dots.appendChild(el('i'));
      r.dots.appendChild(el('i'));
      r.dots.appendChild(el('i'));
    }
    return r;
  };

  /** A finished reply: markdown, feedback buttons, announced once. */
  P.done = function (r, id, reason) {
    var s = this;
    r.body.textContent = '';
    md(r.text, r.body);
    if (reason === 'stop' || reason === 'length') {
      var fb = r.row.appendChild(el('div', 'fb'));
      ['up', 'down'].forEach(function (k) {
        var b = fb.appendChild(el('button', k === 'up' ? '' : 'dn'));
        b.type = 'button';
        b.setAttribute('aria-label', s.t[k]);
        b.setAttribute('aria-pressed', 'false');
        b.appendChild(svg('M2 10h4v11H2zm6 11h9a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 18.4 10H14l1-5a2 2 0 0 0-3.7-1.3L8 10z',
          16));
        b.onclick = function () {
          fb.querySelectorAll('button').forEach(function (o) { o.setAttribute('aria-pressed', String(o === b)); });
          s.tx({type: 'feedback', message_id: id, rating: k});
        };
      });
    } else if (reason === 'cancelled') r.body.appendChild(txt(' ' + s.t.stopped));
  };

  P.note = function (text, cls) { return this.row('n' + (cls ? ' ' + cls : ''), text); };

  P.announce = function (text) {
    var s = this;
    s.live.textContent = (s.name ? s.name + ': ' : '') + text;
    if (!s.isOpen && s.fresh) {
      s.unread++;
      s.label();
    }
  };

  /** Rebuild the transcript from stored messages (a resume the server's frame log no longer covers). */
  P.rebuild = function (msgs) {
    var s = this, k;
    while (s.list.lastChild !== s.greet) s.list.removeChild(s.list.lastChild);
    s.m = {};
    msgs.forEach(function (m) {
      if (m.role === 'visitor') s.row('v', m.text);
      else if (m.role === 'persona' && m.finish_reason !== 'guardrail') {
        var r = s.reply(m.id);
        r.text = m.text;
        s.done(r, m.id, m.finish_reason);
      } else s.row(m.role === 'persona' ? 'g' : 'a ag', m.text);
    });
    for (k in s.p) s.list.appendChild(s.p[k]);
    s.chipsOff();
  };

  P.frame = function (f) {
    var s = this, t = f.type, r, id = f.message_id;
    if (LOGGED[t] || (t === 'error' && (id || f.client_id))) {
      if (f.seq <= s.seq) return;  // already shown: a resume never doubles text
      s.seq = f.seq;
      s.got = 1;
      if (!s.had) {
        s.had = 1;
        s.save();
      }
    }
    if (t === 'ready') {
      s.ready = true;
      s.seq = f.seq;
      s.tries = s.got = 0;
      if (s.cid !== f.conversation_id) {
        s.had = 0;
        s.rebuild([]);
      }
      s.cid = f.conversation_id;
      s.save();
      s.persona(f.persona || {});
      if (f.messages) s.rebuild(f.messages);
      s.state(null);
      // A reload replays from seq 0; a pong after the replay tells whether the server still had the frames.
      if ((s.probe = f.resumed && !f.seq && s.had)) s.ws.send('{"type":"ping"}');
      s.tx();
      s.emit('ready', {conversation_id: s.cid, resumed: f.resumed});
    } else if (t === 'pong' && s.probe) {
      s.probe = false;
      if (!s.got) {
        // The server no longer had this conversation's frames (it restarted): ask for the stored transcript.
        s.full = true;
        s.drop();
      } else s.tx();
    } else if (t === 'message.accepted') {
      r = s.p[f.client_id];
      delete s.p[f.client_id];
      if (r) {
        r.className = 'r v';
        r.textContent = f.text;
      } else s.row('v', f.text);
      s.emit('message', {message_id: id, client_id: f.client_id, text: f.text});
    } else if (t === 'reply.start') {
      s.reply(id);
    } else if (t === 'reply.delta') {
      r = s.reply(id);
      if (r.dots) {
        r.dots.remove();
        r.dots = null;
      }
      r.text += f.text;
      r.body.appendChild(txt(f.text));
    } else if (t === 'reply.end') {
      r = s.reply(id);
      r.dots = null;
      if (!r.g) {
        s.done(r, id, f.finish_reason);
        if (r.text) s.announce(r.text);
      }
      s.emit('reply', {message_id: id, text: r.g || r.text, finish_reason: f.finish_reason, usage: f.usage,
        timing: f.timing, ttft_ms: f.timing && f.timing.ttft_ms});
    } else if (t === 'guardrail') {
      r = s.reply(id);
      r.g = f.text;
      r.dots = null;
      r.row.className = 'r g';
      r.body.textContent = f.text;
      s.announce(f.text);
      s.emit('guardrail', {message_id: id, action: f.action, reason: f.reason, text: f.text});
    } else if (t === 'escalation') {
      s.note(s.t[f.status] || f.status);
      s.emit('escalation', {status: f.status});
    } else if (t === 'agent.message') {
      r = s.row('a ag');
      r.appendChild(el('span', 'who', (f.agent && f.agent.name) || ''));
      r.appendChild(txt(f.text));
      s.fresh = true;
      s.announce(f.text);
      s.emit('reply', {message_id: id, text: f.text, agent: f.agent});
    } else if (t === 'error') {
      if (f.code === 'rate_limited') s.note(s.t.slow, 'e');
      else if (id || f.client_id) {
        r = s.p[f.client_id];
        if (r) {
          delete s.p[f.client_id];
          r.className = 'r v';
        }
        var n = s.note(s.t.failed, 'e'), b = n.appendChild(el('button', 'rt', s.t.retry)), again = s.last;
        b.type = 'button';
        b.onclick = function () { n.remove(); s.send(again); };
      }
      s.emit('error', {code: f.code, message: f.message, retryable: f.retryable, message_id: id});
    }
    s.scroll();
  };

  /** The public API. */
  var prev = w.PersonaWidget;
  if (prev && prev.instances) {  // this file loaded twice: the first copy serves both
    if (me && me.dataset.key) prev.init({el: me});
    return;
  }
  var API = w.PersonaWidget = {
    instances: [],
    /**
     * Create a widget. Unset options come from this script tag's data-* attributes.
     * @param {Object} o key, persona, position, accent, title, open, lang, zIndex, nonce
     * @returns {Widget}
     */
    init: function (o) {
      o = o || {};
      var tag = o.el || me, ds = (tag && tag.dataset) || {}, opts = {key: ds.key, nonce: ds.nonce}, k;
      if (!o.persona) for (k in ds) opts[k] = ds[k];  // the tag's own widget; another one only shares its key
      for (k in o) opts[k] = o[k];
      opts.el = tag;
      opts.server = opts.server || (tag && tag.src ? new URL(tag.src).origin : location.origin);
      opts.nonce = opts.nonce || (tag && tag.nonce);
      if (!opts.key || !opts.persona) {
        log('error', 'data-key and data-persona are required');
        return null;
      }
      var i = new Widget(opts);
      API.instances.push(i);
      return i;
    }
  };
  function run(c) {
    var i = c && c[0] === 'init' ? API.init(c[1]) : null;
    if (typeof c[2] === 'function') c[2](i);
  }
  function start() {
    if (me && me.dataset.key && me.dataset.persona) API.init();
    ((prev && prev.q) || []).forEach(run);
    API.q = {push: run};
  }
  if (d.body) start();
  else d.addEventListener('DOMContentLoaded', start);
})(window, document);
