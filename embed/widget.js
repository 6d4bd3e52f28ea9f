/**
 * widget_server embed: one script tag gives a page a streaming, resumable chat with a persona.
 *
 *   <script src="https://HOST/embed.js" data-key="pk_…" data-persona="SLUG" async></script>
 *
 * Options: data-* attributes (key, persona, position, accent, title, open, lang, z-index, nonce) or
 * `PersonaWidget.init(options)`; calls made before this script loads wait in `window.PersonaWidget.q` as
 * `['init', options, callback]`. Events: see `on()`. No cookie is set; the session token stays in memory; the
 * visitor and conversation ids live in localStorage, per key and persona. Everything is in a Shadow DOM;
 * untrusted text only ever becomes text nodes.
 */
(function (w, d) {
  'use strict';

  var script = d.currentScript;
  var NS = 'persona-widget:';
  var MAX = 4000;
  // Server frames that advance `seq`: a resume never shows one twice.
  var SEQUENCED = {'message.accepted': 1, 'reply.start': 1, 'reply.delta': 1, 'reply.end': 1, guardrail: 1,
    escalation: 1, 'agent.message': 1, typing: 1};
  var AFTER = {requested: 'escalated', agent_joined: 'agent', agent_left: 'escalated', resolved: 'bot',
    closed: 'closed'};
  // `escalation`: what the visitor reads for each escalation status.
  var STRINGS = {
    en: {
      open: 'Open chat', close: 'Close chat', message: 'Message', send: 'Send', typing: 'Typing…',
      offline: 'Offline. Reconnecting…', retry: 'Retry', origin: 'This chat is not enabled for this website.',
      gone: 'This chat is no longer available.', elsewhere: 'This conversation continues in another window.',
      error: 'Something went wrong.', left: 'characters left', up: 'Helpful', down: 'Not helpful',
      failed: 'The reply failed.', slow: 'Too many messages. Please wait a moment.', unread: 'unread',
      stopped: '(stopped)',
      escalation: {
        requested: 'Connecting you with a person…', agent_joined: 'A person joined the chat.',
        agent_left: 'The person left the chat.',
        resolved: 'Your request was marked as solved. You can keep writing here.',
        closed: 'The conversation was closed.'
      }
    },
    de: {
      open: 'Chat öffnen', close: 'Chat schließen', message: 'Nachricht', send: 'Senden', typing: 'Schreibt…',
      offline: 'Offline. Verbinde neu…', retry: 'Erneut versuchen',
      origin: 'Dieser Chat ist für diese Website nicht freigeschaltet.', gone: 'Dieser Chat ist nicht mehr verfügbar.',
      elsewhere: 'Dieses Gespräch läuft in einem anderen Fenster weiter.', error: 'Etwas ist schiefgelaufen.',
      left: 'Zeichen übrig', up: 'Hilfreich', down: 'Nicht hilfreich', failed: 'Die Antwort ist fehlgeschlagen.',
      slow: 'Zu viele Nachrichten. Bitte kurz warten.', unread: 'ungelesen', stopped: '(abgebrochen)',
      escalation: {
        requested: 'Ich verbinde Sie mit einem Menschen…', agent_joined: 'Eine Person ist dem Chat beigetreten.',
        agent_left: 'Die Person hat den Chat verlassen.',
        resolved: 'Ihr Anliegen wurde als gelöst markiert. Sie können hier weiterschreiben.',
        closed: 'Das Gespräch wurde beendet.'
      }
    },
    es: {
      open: 'Abrir chat', close: 'Cerrar chat', message: 'Mensaje', send: 'Enviar', typing: 'Escribiendo…',
      offline: 'Sin conexión. Reconectando…', retry: 'Reintentar',
      origin: 'Este chat no está habilitado para este sitio web.', gone: 'Este chat ya no está disponible.',
      elsewhere: 'Esta conversación continúa en otra ventana.', error: 'Algo salió mal.',
      left: 'caracteres restantes', up: 'Útil', down: 'No útil', failed: 'La respuesta falló.',
      slow: 'Demasiados mensajes. Espera un momento.', unread: 'sin leer', stopped: '(detenido)',
      escalation: {
        requested: 'Te estamos conectando con una persona…', agent_joined: 'Una persona se unió al chat.',
        agent_left: 'La persona salió del chat.',
        resolved: 'Tu consulta se marcó como resuelta. Puedes seguir escribiendo aquí.',
        closed: 'La conversación se cerró.'
      }
    }
  };
  var STYLES = ':host{all:initial!important;display:block!important;position:fixed!important;bottom:0!important;' +
    'right:0!important;width:0!important;height:0!important;z-index:var(--z,2147483000)!important;' +
    'visibility:visible!important;opacity:1!important;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,' +
    'sans-serif!important;color:#1a1a1a!important}' +
    '*{box-sizing:border-box;margin:0;padding:0;font:inherit;color:inherit}[hidden]{display:none!important}' +
    'strong{font-weight:700}em{font-style:italic}' +
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
    '.aa{width:20px;height:20px;border-radius:50%;object-fit:cover;vertical-align:middle;margin-right:6px}' +
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

  function has(table, key) { return Object.prototype.hasOwnProperty.call(table, key); }

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

  function button(parent, cls, text, onclick) {
    var b = parent.appendChild(el('button', cls, text));
    b.type = 'button';
    b.onclick = onclick;
    return b;
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
   * @param {Object} options key, persona, position ('right'|'left'), accent, title, open, lang, zIndex, nonce
   */
  function Widget(options) {
    var self = this, lang = (options.lang || navigator.language || 'en').slice(0, 2).toLowerCase();
    self.options = options;
    self.strings = has(STRINGS, lang) ? STRINGS[lang] : STRINGS.en;
    self.listeners = {};
    self.replies = {};  // message_id → {text, row, body, dots, guardrail}
    self.pending = {};  // client_id → the visitor's row until the server accepts it
    self.outbox = [];  // frames waiting for a ready connection
    self.seq = 0;
    self.attempts = 0;
    self.unread = 0;
    self.storageKey = NS + options.key + ':' + options.persona;
    var saved = store(self.storageKey);  // {v: visitor id, c: conversation id, n: frames were shown}
    self.visitorId = saved.v;
    self.conversationId = saved.c;
    self.hasHistory = saved.n;
    self.build();
    self.onOnline = function () {
      if (!self.connected) self.forget();  // a socket begun while offline is bound to fail: begin afresh
      self.kick();
    };
    self.onOffline = function () { self.lost(); };
    w.addEventListener('online', self.onOnline);
    w.addEventListener('offline', self.onOffline);
    self.heartbeat = setInterval(function () {
      if (!self.connected) return;
      if (Date.now() - self.lastReceived > 60000) self.drop();  // no pong for two beats: the connection is dead
      else self.sendFrame({type: 'ping'});
    }, 25000);
    self.connect();
    // After init() returns, so that `init(o).on('ready', fn)` hears it.
    Promise.resolve().then(function () {
      if (self.destroyed) return;
      self.emit('ready');
      if (options.open === true || options.open === 'true' || options.open === '') self.open();
    });
  }

  var P = Widget.prototype;

  P.build = function () {
    var self = this, t = self.strings, o = self.options;
    var host = self.host = d.createElement('persona-widget');
    var root = host.attachShadow({mode: 'open'});
    if (o.accent && w.CSS && w.CSS.supports('color', o.accent)) host.style.setProperty('--a', o.accent);
    else host.style.setProperty('--a', '#1d4ed8');
    if (o.zIndex) host.style.setProperty('--z', String(parseInt(o.zIndex, 10) || 2147483000));
    if (o.position === 'left') {
      host.style.setProperty('--r', 'auto');
      host.style.setProperty('--x', '20px');
    }
    try {
      sheet = sheet || new CSSStyleSheet();
      if (!sheet.cssRules.length) sheet.replaceSync(STYLES);
      root.adoptedStyleSheets = [sheet];
    } catch (e) {
      var style = el('style', '', STYLES);
      if (o.nonce) style.nonce = o.nonce;
      root.appendChild(style);
    }
    var launcher = self.launcher = button(root, 'l', null, function () { self.toggle(); });
    launcher.setAttribute('aria-expanded', 'false');
    launcher.setAttribute('aria-controls', 'p');
    launcher.appendChild(svg('M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z', 28));
    self.badge = launcher.appendChild(el('span', 'b'));
    self.badge.hidden = true;
    self.badge.setAttribute('aria-hidden', 'true');

    var panel = self.panel = root.appendChild(el('div', 'p'));
    panel.id = 'p';
    panel.hidden = true;
    panel.setAttribute('role', 'dialog');
    panel.setAttribute('aria-labelledby', 't');
    panel.onkeydown = function (e) { if (e.key === 'Escape') { e.preventDefault(); self.close(); } };
    var header = panel.appendChild(el('div', 'h'));
    self.avatar = header.appendChild(el('span', 'av'));
    self.avatar.setAttribute('aria-hidden', 'true');
    self.title = header.appendChild(el('h2', 't', o.title || ''));
    self.title.id = 't';
    button(header, 'x', '×', function () { self.close(); }).setAttribute('aria-label', t.close);
    self.statusBar = panel.appendChild(el('div', 's'));
    self.statusBar.setAttribute('role', 'status');
    self.statusBar.hidden = true;
    self.list = panel.appendChild(el('div', 'm'));
    self.list.tabIndex = 0;
    self.list.setAttribute('aria-labelledby', 't');
    self.greeting = self.list.appendChild(el('div', 'r a'));
    self.greeting.hidden = true;
    self.starters = panel.appendChild(el('div', 'c'));
    self.counter = panel.appendChild(el('div', 'k'));
    self.counter.hidden = true;
    self.counter.id = 'k';
    var form = panel.appendChild(el('form', 'f'));
    form.appendChild(el('label', 'sr', t.message)).htmlFor = 'i';
    var input = self.input = form.appendChild(el('textarea'));
    input.id = 'i';
    input.rows = 1;
    input.maxLength = MAX;
    input.placeholder = t.message + '…';
    input.setAttribute('enterkeyhint', 'send');
    input.setAttribute('aria-describedby', 'k');
    var sendButton = self.sendButton = form.appendChild(el('button', 'sd'));
    sendButton.setAttribute('aria-label', t.send);
    sendButton.appendChild(svg('M3 20l18-8L3 4v6l12 2-12 2z', 20));
    input.onkeydown = function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    };
    input.oninput = function () {
      self.typing(!!input.value);
      var left = MAX - input.value.length;
      input.style.height = 'auto';
      input.style.height = Math.min(input.scrollHeight + 2, 120) + 'px';
      self.counter.hidden = left > 400;
      self.counter.textContent = left + ' ' + t.left;
      self.counter.className = left < 100 ? 'k e' : 'k';
    };
    function submit() {
      if (self.send(input.value)) {
        input.value = '';
        input.oninput();
      }
    }
    form.onsubmit = function (e) { e.preventDefault(); submit(); };
    self.liveRegion = panel.appendChild(el('div', 'sr'));
    self.liveRegion.setAttribute('aria-live', 'polite');
    self.fitViewport = function () {
      var v = w.visualViewport;
      if (v) {
        host.style.setProperty('--vh', v.height + 'px');
        host.style.setProperty('--vt', v.offsetTop + 'px');
      }
    };
    if (w.visualViewport) {
      w.visualViewport.addEventListener('resize', self.fitViewport);
      w.visualViewport.addEventListener('scroll', self.fitViewport);
    }
    self.label();
    (d.body || d.documentElement).appendChild(host);
  };

  P.label = function () {
    var self = this, t = self.strings;
    self.badge.textContent = self.unread;
    self.badge.hidden = !self.unread;
    self.launcher.setAttribute('aria-label', t.open + (self.unread ? ' (' + self.unread + ' ' + t.unread + ')' : ''));
  };

  /** Show the persona: name, avatar, greeting and starter chips. */
  P.showPersona = function (persona) {
    var self = this, name = self.options.title || persona.name || '', url = link(persona.avatar_url || '');
    var avatar = self.avatar;
    self.personaName = persona.name || '';
    self.title.textContent = name;
    if (avatar.dataset.u !== url + name) {
      avatar.dataset.u = url + name;
      avatar.textContent = (name || '?').charAt(0).toUpperCase();
      if (url) {
        var img = el('img');
        img.alt = '';
        img.onload = function () { avatar.textContent = ''; avatar.appendChild(img); };
        img.src = url;
      }
    }
    self.greeting.textContent = '';
    if (persona.greeting) md(persona.greeting, self.greeting);
    self.greeting.hidden = !persona.greeting;
    self.starters.textContent = '';
    (persona.starters || []).slice(0, 4).forEach(function (q) {
      button(self.starters, '', q, function () { self.send(q); });
    });
    self.hideStarters();
  };

  P.hideStarters = function () { this.starters.hidden = this.list.children.length > 1; };

  /** Open the panel and move focus into it. */
  P.open = function () {
    var self = this;
    if (self.isOpen) return;
    self.isOpen = true;
    self.panel.hidden = false;
    self.launcher.setAttribute('aria-expanded', 'true');
    self.unread = 0;
    self.label();
    self.fitViewport();
    self.scroll(true);
    (self.input.disabled ? self.panel.querySelector('button') : self.input).focus();
    // Queued until a connection is ready: a new visitor's first open is sent with the first message.
    self.sendFrame({type: 'event', name: 'widget.opened'});
    self.kick();
    self.emit('open');
  };

  /** Close the panel; focus goes back to the launcher. */
  P.close = function () {
    var self = this;
    if (!self.isOpen) return;
    self.isOpen = false;
    self.panel.hidden = true;
    self.launcher.setAttribute('aria-expanded', 'false');
    self.launcher.focus();
    self.sendFrame({type: 'event', name: 'widget.closed'});
    self.emit('close');
  };

  /** Open the panel if it is closed, else close it. */
  P.toggle = function () { if (this.isOpen) this.close(); else this.open(); };

  /**
   * Send a visitor message. Queued while offline, sent once connected.
   * @param {string} text
   * @returns {boolean} whether it was taken
   */
  P.send = function (text) {
    var self = this;
    text = String(text == null ? '' : text);
    if (!text.trim() || text.length > MAX || self.stopped) return false;
    var id = 'c' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    self.pending[id] = self.row('v q', text);
    self.lastSent = text;
    self.countsUnread = true;
    self.sendFrame({type: 'message', client_id: id, text: text});
    self.kick();
    self.scroll(true);
    return true;
  };

  /**
   * Identify the visitor as a user of the site (verified server-side with `hash` when the site requires it).
   * @param {{id: string, name?: string, email?: string, hash?: string}} user
   */
  P.identify = function (user) {
    var self = this;
    self.user = user;
    self.token = null;
    if (self.ws) self.drop();
  };

  /**
   * Listen to an event: ready (usable; once, at load), connected (a conversation is live: each time a
   * connection to it is ready), open, close, message, reply, guardrail, escalation, error.
   * @param {string} name
   * @param {function(Object)} fn called with the event's detail
   * @returns {function} a function that removes the listener
   */
  P.on = function (name, fn) {
    var fns = this.listeners[name] = this.listeners[name] || [];
    fns.push(fn);
    return function () { fns.splice(fns.indexOf(fn) >>> 0, 1); };
  };

  /** Remove the widget from the page and close its connection. */
  P.destroy = function () {
    var self = this, ws = self.ws;
    self.destroyed = self.stopped = true;
    self.ws = null;
    if (ws) ws.close();
    clearTimeout(self.retryTimer);
    clearInterval(self.heartbeat);
    w.removeEventListener('online', self.onOnline);
    w.removeEventListener('offline', self.onOffline);
    if (w.visualViewport) {
      w.visualViewport.removeEventListener('resize', self.fitViewport);
      w.visualViewport.removeEventListener('scroll', self.fitViewport);
    }
    self.host.remove();
    API.instances.splice(API.instances.indexOf(self) >>> 0, 1);
  };

  /** An event to the on() listeners, the script element and window. */
  P.emit = function (name, data) {
    var self = this, detail = {instance: self}, k;
    for (k in data) detail[k] = data[k];
    (self.listeners[name] || []).slice().forEach(function (fn) {
      try { fn(detail); } catch (e) { log('error', 'listener failed: ' + e); }
    });
    [self.options.el, w].forEach(function (t) { if (t) t.dispatchEvent(new CustomEvent(NS + name, {detail: detail})); });
  };

  P.save = function () { store(this.storageKey, {v: this.visitorId, c: this.conversationId, n: this.hasHistory}); };

  /** A frame to the server: sent now when connected, else when the next connection is ready. */
  P.sendFrame = function (frame) {
    var self = this;
    if (frame) self.outbox.push(frame);
    while (self.connected && !self.probing && self.outbox.length) self.ws.send(JSON.stringify(self.outbox.shift()));
  };

  /** A socket starts a conversation: open one only for a visitor who has one, or who writes. */
  P.wantsSocket = function () {
    return this.conversationId || this.outbox.some(function (f) { return f.type === 'message'; });
  };

  /** Connect now if not connected (and not stopped); a pending backoff is cut short. */
  P.kick = function () {
    var self = this;
    if (self.ws || self.connecting || self.stopped || self.destroyed) return;
    clearTimeout(self.retryTimer);
    self.connect();
  };

  /** Leave the current socket and connect again at once. */
  P.drop = function () {
    this.forget();
    this.kick();
  };

  /** Stop using the current socket now, without waiting for its closing handshake. */
  P.forget = function () {
    var self = this, ws = self.ws;
    self.ws = null;
    self.connected = false;
    if (ws) ws.close();
  };

  /** Offline: say so at once (the socket's close event may come late, or never), and retry later. */
  P.lost = function () {
    if (!this.ws) return;
    this.forget();
    this.retry(0);
  };

  P.connect = function () {
    var self = this;
    if (self.destroyed || self.ws || self.connecting) return;
    self.connecting = true;
    clearTimeout(self.retryTimer);
    (self.token && Date.now() < self.tokenExpires ? Promise.resolve() : self.session()).then(function () {
      self.connecting = false;
      if (!self.destroyed && !self.ws && self.wantsSocket()) self.socket();
    }, function (e) {
      self.connecting = false;
      if (e.status === 403) self.stop('origin', e.message);
      else if (e.status === 404) self.stop('gone', e.message);
      else if (e.status === 400 || e.status === 401) self.stop('error', e.message);
      else self.retry(e.status === 429 ? 10000 : 0);
    });
  };

  P.session = function () {
    var self = this, body = {key: self.options.key, persona: self.options.persona};
    if (self.visitorId) body.visitor_id = self.visitorId;
    if (self.user) body.user = self.user;
    return fetch(self.options.server + '/v1/widget/sessions', {
      method: 'POST', mode: 'cors', credentials: 'omit', headers: {'content-type': 'application/json'},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          var e = new Error((j.error && j.error.message) || 'HTTP ' + r.status);
          e.status = r.status;
          throw e;
        }
        self.token = j.token;
        self.tokenExpires = Date.now() + 600000;
        self.socketUrl = j.ws_url;
        self.visitorId = j.visitor_id;
        self.save();
        if (self.statusBar.className === 's') self.state(null);
        self.showPersona(j.persona || {});
      });
    });
  };

  P.socket = function () {
    var self = this, ws = self.ws = new WebSocket(self.socketUrl);
    self.lastReceived = Date.now();
    ws.onopen = function () {
      var hello = {type: 'hello', token: self.token};
      if (self.conversationId) {
        hello.resume = {conversation_id: self.conversationId, epoch: self.epoch};
        if (!self.wantsTranscript) hello.resume.last_seq = self.seq;  // without it: the stored transcript
      }
      self.wantsTranscript = false;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = function (e) {
      if (self.ws !== ws) return;
      self.lastReceived = Date.now();
      try { self.receive(JSON.parse(e.data)); } catch (x) { log('warn', 'bad frame: ' + x); }
    };
    ws.onclose = function (e) {
      if (self.ws !== ws) return;
      self.ws = null;
      self.connected = false;
      self.closed(e.code);
    };
  };

  P.closed = function (code) {
    var self = this;
    if (self.destroyed) return;
    if (code === 4403) return self.stop('origin', 'this page\'s origin is not allowed for this chat (4403)');
    if (code === 4404) return self.stop('gone', 'the persona no longer exists (4404)');
    if (code === 4409) return self.state('elsewhere', 1);
    if (code === 4401) self.token = null;
    self.retry(code === 4429 ? 30000 : 0);
  };

  /** Reconnect later: exponential backoff with jitter. */
  P.retry = function (min) {
    var self = this, n = self.attempts++;
    self.state('offline', 1);
    var wait = Math.max(min, Math.min(30000, 500 * Math.pow(2, n)));
    clearTimeout(self.retryTimer);
    self.retryTimer = setTimeout(function () { self.connect(); }, wait / 2 + Math.random() * wait / 2);
  };

  /** A state that needs the visitor or the site owner: no automatic reconnect. */
  P.stop = function (kind, why) {
    var self = this;
    self.stopped = kind !== 'error';
    self.input.disabled = self.sendButton.disabled = self.stopped;
    self.state(kind, kind === 'error');
    log('error', (kind === 'origin' ? location.origin + ': ' : '') + why +
      (kind === 'origin' ? ' (add this origin to the publishable key\'s allowed origins)' : ''));
    self.emit('error', {code: kind, message: why});
  };

  /** The status bar: null hides it; retry adds a button. */
  P.state = function (kind, retry) {
    var self = this, bar = self.statusBar;
    bar.textContent = '';
    bar.hidden = !kind;
    if (!kind) return;
    bar.className = kind === 'offline' ? 's' : 's e';
    bar.appendChild(el('span', '', self.strings[kind]));
    if (retry) {
      button(bar, '', self.strings.retry, function () {
        self.attempts = 0;
        self.stopped = false;
        self.input.disabled = self.sendButton.disabled = false;
        self.state(null);
        self.kick();
      });
    }
  };

  P.row = function (cls, text, before) {
    var self = this, r = el('div', 'r ' + cls);
    if (text != null) r.textContent = text;
    self.list.insertBefore(r, before || null);
    self.hideStarters();
    return r;
  };

  P.scroll = function (force) {
    var l = this.list;
    if (force || l.scrollHeight - l.scrollTop - l.clientHeight < 120) l.scrollTop = l.scrollHeight;
  };

  function dots(self, into) {
    var d = into.appendChild(el('span', 'd'));
    d.setAttribute('aria-label', self.strings.typing);
    d.setAttribute('role', 'img');
    d.appendChild(el('i'));
    d.appendChild(el('i'));
    d.appendChild(el('i'));
    return d;
  }

  /** The reply with this id; a new one shows a typing indicator. */
  P.reply = function (id) {
    var self = this, r = self.replies[id];
    if (!r) {
      r = self.replies[id] = {text: '', row: self.row('a')};
      r.body = r.row.appendChild(el('div', 'bd'));
      r.dots = dots(self, r.body);
    }
    return r;
  };

  /** A finished reply: markdown, feedback buttons, announced once. */
  P.done = function (r, id, reason) {
    var self = this;
    r.body.textContent = '';
    md(r.text, r.body);
    if (reason === 'stop' || reason === 'length') {
      var fb = r.row.appendChild(el('div', 'fb'));
      ['up', 'down'].forEach(function (k) {
        var b = button(fb, k === 'up' ? '' : 'dn', null, function () {
          fb.querySelectorAll('button').forEach(function (o) { o.setAttribute('aria-pressed', String(o === b)); });
          self.sendFrame({type: 'feedback', message_id: id, rating: k});
        });
        b.setAttribute('aria-label', self.strings[k]);
        b.setAttribute('aria-pressed', 'false');
        b.appendChild(svg('M2 10h4v11H2zm6 11h9a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 18.4 10H14l1-5a2 2 0 0 0-3.7-1.3L8 10z',
          16));
      });
    } else if (reason === 'cancelled') r.body.appendChild(txt(' ' + self.strings.stopped));
  };

  P.note = function (text, cls) { return this.row('n' + (cls ? ' ' + cls : ''), text); };

  // While a person has the conversation they see the visitor typing (at most every 2 s; stopped after 3 s).
  P.typing = function (on) {
    var self = this, t = Date.now();
    clearTimeout(self.tyStop);
    if (self.status !== 'agent') return;
    if (on) self.tyStop = setTimeout(function () { self.typing(); }, 3000);
    if (on ? t - (self.tySent || 0) > 2000 : self.tySent) {
      self.tySent = on ? t : 0;
      self.sendFrame({type: 'typing', active: !!on});
    }
  };

  // The agent's typing indicator, gone when they stop or send, or after 6 s.
  P.agentTyping = function (on) {
    var self = this;
    clearTimeout(self.tyEnd);
    if (self.tyRow && !on) self.tyRow = self.tyRow.remove();
    if (on && !self.tyRow) dots(self, self.tyRow = self.row('a ag'));
    if (on) self.tyEnd = setTimeout(function () { self.agentTyping(); }, 6000);
  };

  P.agentRow = function (text, agent) {
    var r = this.row('a ag'), who = el('span', 'who', (agent && agent.name) || '');
    var url = link((agent && agent.avatar_url) || '');
    if (url) {  // shown once it loads: a blocked or broken image leaves the name alone
      var img = el('img', 'aa');
      img.alt = '';
      img.referrerPolicy = 'no-referrer';
      img.onload = function () { who.insertBefore(img, who.firstChild); };
      img.src = url;
    }
    r.appendChild(who);
    r.appendChild(txt(text));
  };

  P.announce = function (text) {
    var self = this;
    self.liveRegion.textContent = (self.personaName ? self.personaName + ': ' : '') + text;
    if (!self.isOpen && self.countsUnread) {
      self.unread++;
      self.label();
    }
  };

  /** Rebuild the transcript from stored messages (a resume the server's frame log no longer covers). */
  P.rebuild = function (messages) {
    var self = this, k;
    while (self.list.lastChild !== self.greeting) self.list.removeChild(self.list.lastChild);
    self.replies = {};
    messages.forEach(function (m) {
      if (m.role === 'visitor') self.row('v', m.text);
      else if (m.role === 'persona' && m.finish_reason !== 'guardrail') {
        var r = self.reply(m.id);
        r.text = m.text;
        self.done(r, m.id, m.finish_reason);
      } else if (m.role === 'agent') self.agentRow(m.text, m.agent);
      else self.row(m.role === 'persona' ? 'g' : 'a ag', m.text);
    });
    for (k in self.pending) self.list.appendChild(self.pending[k]);
    self.hideStarters();
  };

  P.receive = function (frame) {
    var self = this, type = frame.type;
    if (has(SEQUENCED, type) || (type === 'error' && (frame.message_id || frame.client_id))) {
      if (frame.seq <= self.seq) return;  // already shown: a resume never doubles text
      self.seq = frame.seq;
      self.gotFrames = true;
      if (!self.hasHistory) {
        self.hasHistory = 1;
        self.save();
      }
    }
    if (has(ON_FRAME, type)) ON_FRAME[type](self, frame, frame.message_id);
    self.scroll();
  };

  /** A handler per server frame type, called on the widget with the frame and its message_id. */
  var ON_FRAME = {
    ready: function (self, f) {
      self.connected = true;
      self.seq = f.seq;
      self.epoch = f.epoch;  // the log's: a server that lost it (Redis restarted) gives the transcript instead
      self.attempts = 0;
      self.gotFrames = false;
      if (self.conversationId !== f.conversation_id) {
        self.hasHistory = 0;
        self.rebuild([]);
      }
      self.conversationId = f.conversation_id;
      self.save();
      self.showPersona(f.persona || {});
      self.status = f.status;
      if (f.messages) self.rebuild(f.messages);
      self.state(null);
      // A reload replays from seq 0; a pong after the replay tells whether the server still had the frames.
      if ((self.probing = f.resumed && !f.seq && self.hasHistory)) self.ws.send('{"type":"ping"}');
      self.sendFrame();
      self.emit('connected', {conversation_id: self.conversationId, resumed: f.resumed});
    },

    pong: function (self) {
      if (!self.probing) return;
      self.probing = false;
      if (!self.gotFrames) {
        // The server no longer had this conversation's frames (it restarted): ask for the stored transcript.
        self.wantsTranscript = true;
        self.drop();
      } else self.sendFrame();
    },

    'message.accepted': function (self, f, id) {
      var r = self.pending[f.client_id];
      delete self.pending[f.client_id];
      if (r) {
        r.className = 'r v';
        r.textContent = f.text;
      } else self.row('v', f.text);
      self.emit('message', {message_id: id, client_id: f.client_id, text: f.text});
    },

    'reply.start': function (self, f, id) { self.reply(id); },

    'reply.delta': function (self, f, id) {
      var r = self.reply(id);
      if (r.dots) {
        r.dots.remove();
        r.dots = null;
      }
      r.text += f.text;
      r.body.appendChild(txt(f.text));
    },

    'reply.end': function (self, f, id) {
      var r = self.reply(id);
      r.dots = null;
      if (!r.guardrail) {
        self.done(r, id, f.finish_reason);
        if (r.text) self.announce(r.text);
      }
      self.emit('reply', {message_id: id, text: r.guardrail || r.text, finish_reason: f.finish_reason,
        usage: f.usage, timing: f.timing, ttft_ms: f.timing && f.timing.ttft_ms});
    },

    guardrail: function (self, f, id) {
      var r = self.reply(id), text = f.text;
      if (f.action === 'escalate') {
        // what the escalation frame that follows would say again; the policy's own default words, in the
        // visitor's language
        self.asked = true;
        if (text === STRINGS.en.escalation.requested) text = self.strings.escalation.requested;
      }
      r.guardrail = text;
      r.dots = null;
      r.row.className = 'r g';
      r.body.textContent = text;
      self.announce(text);
      self.emit('guardrail', {message_id: id, action: f.action, reason: f.reason, text: f.text});
    },

    escalation: function (self, f) {
      var said = self.strings.escalation;
      if (has(AFTER, f.status)) self.status = AFTER[f.status];
      if (self.status !== 'agent') self.agentTyping();
      // nobody online, or a long wait: what the tenant's policy says, as text
      if ((f.status === 'unavailable' || f.status === 'waiting') && typeof f.text === 'string') self.note(f.text);
      if (f.status === 'requested' && self.asked) self.asked = false;  // the guardrail's reply said it
      else if (has(said, f.status)) self.note(said[f.status]);  // never the raw status word
      self.emit('escalation', {status: f.status});
    },

    typing: function (self, f) {
      if (f.who === 'agent') self.agentTyping(f.active === true);
    },

    'agent.message': function (self, f, id) {
      self.agentTyping(false);
      self.agentRow(f.text, f.agent);
      self.countsUnread = true;
      self.announce(f.text);
      self.emit('reply', {message_id: id, text: f.text, agent: f.agent});
    },

    error: function (self, f, id) {
      if (f.code === 'rate_limited') self.note(self.strings.slow, 'e');
      else if (id || f.client_id) {
        var r = self.pending[f.client_id];
        if (r) {
          delete self.pending[f.client_id];
          r.className = 'r v';
        }
        var note = self.note(self.strings.failed, 'e'), again = self.lastSent;
        button(note, 'rt', self.strings.retry, function () { note.remove(); self.send(again); });
      }
      self.emit('error', {code: f.code, message: f.message, retryable: f.retryable, message_id: id});
    }
  };

  /** The public API. */
  var prev = w.PersonaWidget;
  if (prev && prev.instances) {  // this file loaded twice: the first copy serves both
    if (script && script.dataset.key) prev.init({el: script});
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
      var tag = o.el || script, ds = (tag && tag.dataset) || {}, opts = {key: ds.key, nonce: ds.nonce}, k;
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
    if (script && script.dataset.key && script.dataset.persona) API.init();
    ((prev && prev.q) || []).forEach(run);
    API.q = {push: run};
  }
  if (d.body) start();
  else d.addEventListener('DOMContentLoaded', start);
})(window, document);
