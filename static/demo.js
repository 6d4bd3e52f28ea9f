// The demo page's test chat: a session, a socket, streamed text as text nodes. The real widget is embed/.
'use strict';
(function () {
  var box = document.getElementById('chat');
  if (!box) return;
  var log = document.getElementById('log');
  var input = document.getElementById('text');
  var ws = null;
  var replies = {};

  function line(cls, text) {
    var li = document.createElement('li');
    li.className = cls;
    li.textContent = text;
    log.appendChild(li);
    return li;
  }

  function onFrame(frame) {
    if (frame.type === 'ready' && frame.persona.greeting) line('persona', frame.persona.greeting);
    else if (frame.type === 'reply.start') replies[frame.message_id] = line('persona', '…');
    else if (frame.type === 'reply.delta') {
      var li = replies[frame.message_id];
      if (li.textContent === '…') li.textContent = '';
      li.appendChild(document.createTextNode(frame.text));
    } else if (frame.type === 'guardrail') replies[frame.message_id].textContent = frame.text;
    else if (frame.type === 'error') line('error', frame.message);
  }

  fetch(box.dataset.server + '/v1/widget/sessions', {
    method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({key: box.dataset.key, persona: box.dataset.persona})
  }).then(function (r) { return r.json(); }).then(function (s) {
    if (!s.token) { line('error', s.error ? s.error.message : 'no session'); return; }
    ws = new WebSocket(s.ws_url);
    ws.onopen = function () { ws.send(JSON.stringify({type: 'hello', token: s.token})); };
    ws.onmessage = function (e) { onFrame(JSON.parse(e.data)); };
    ws.onclose = function (e) { if (e.code !== 1000) line('error', 'connection closed (' + e.code + ')'); };
  });

  document.getElementById('form').addEventListener('submit', function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || !ws) return;
    line('visitor', text);
    ws.send(JSON.stringify({type: 'message', client_id: String(Date.now()), text: text}));
    input.value = '';
  });
})();
