"""Async prompt jobs (issue 16): a prompt stored, run in the background on any node, its result read later or
POSTed to a callback. `jobs` is what the API asks for, `worker` runs them, `callback` delivers their results."""
