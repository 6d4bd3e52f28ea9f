// A test run's page (no inline script: the CSP forbids it): while the run goes, its progress streams in
// (`/console/tests/runs/{id}/events`); when it ends the page reloads to show every case.
"use strict";
(function () {
  const run = document.getElementById("run");
  if (!run || ["passed", "failed", "error"].indexOf(run.dataset.status) >= 0) return;
  const count = document.getElementById("run-count");
  const status = document.getElementById("run-status");
  const stream = new EventSource("/console/tests/runs/" + run.dataset.run + "/events");
  stream.addEventListener("status", function (e) { status.textContent = JSON.parse(e.data).status; });
  stream.addEventListener("progress", function (e) {
    const f = JSON.parse(e.data);
    if (typeof f.done === "number" && typeof f.total === "number") count.textContent = f.done + " of " + f.total + " cases run…";
  });
  stream.addEventListener("done", function () { stream.close(); location.reload(); });
})();
