// The Safety policy page: an error's "line N" link puts the caret on that line of the editor and selects it.
"use strict";
(function () {
  document.addEventListener("click", function (event) {
    const link = event.target instanceof Element ? event.target.closest("a[data-line]") : null;
    const editor = document.getElementById("policy-yaml");
    if (!link || !(editor instanceof HTMLTextAreaElement)) {
      return;
    }
    event.preventDefault();
    const wanted = Number(link.dataset.line);
    const lines = editor.value.split("\n");
    let start = 0;
    for (let i = 0; i < Math.min(wanted - 1, lines.length - 1); i += 1) {
      start += lines[i].length + 1;
    }
    const line = lines[Math.min(wanted - 1, lines.length - 1)] || "";
    editor.focus();
    editor.setSelectionRange(start, start + line.length);
    const height = editor.scrollHeight / Math.max(lines.length, 1);
    editor.scrollTop = Math.max(0, (wanted - 3) * height);
  });
})();
