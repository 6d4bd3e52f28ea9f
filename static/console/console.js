// The console's shared behaviour (no inline script anywhere: the CSP forbids it).
// - `consoleFetch(url, options)`: fetch with the page's CSRF token in `X-CSRF-Token`.
// - A form with `data-confirm="question"` asks before it submits.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const token = meta ? meta.getAttribute("content") : "";
  window.consoleFetch = function (url, options) {
    const opts = Object.assign({credentials: "same-origin"}, options || {});
    opts.headers = Object.assign({"X-CSRF-Token": token, "Accept": "application/json"}, opts.headers || {});
    return fetch(url, opts);
  };
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();
