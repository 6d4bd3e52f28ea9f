// The demo page: a button that opens the embedded widget, and a log of the events it sends to the page.
'use strict';
(function () {
  var list = document.getElementById('events');
  var button = document.getElementById('open-chat');
  if (button) {
    button.addEventListener('click', function () {
      var w = window.PersonaWidget;
      if (w && w.instances && w.instances[0]) w.instances[0].open();
    });
  }
  var names = ['ready', 'connected', 'open', 'close', 'message', 'reply', 'guardrail', 'escalation', 'error'];
  names.forEach(function (name) {
    window.addEventListener('persona-widget:' + name, function (e) {
      if (!list) return;
      var d = e.detail, li = document.createElement('li');
      var extra = d.ttft_ms != null ? ' (first token after ' + d.ttft_ms + ' ms)' : d.text ? ': ' + d.text : '';
      li.textContent = name + extra;
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 12) list.removeChild(list.lastChild);
    });
  });
})();
