#!/usr/bin/env bash
# The second command: install what the tests need, start the databases they use, lint, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test

# PostgreSQL at 127.0.0.1:5432 (trust auth, database "test"): the storage tests run on it as well as on SQLite.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi

# Redis at 127.0.0.1:6379: the shared rate limits of several nodes are tested against it.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

# HAProxy and a redis-server binary for the tests of several nodes (tests/test_nodes.py), which start their own.
for tool in haproxy redis-server; do
  if ! command -v "$tool" >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done

# Debian's Chromium for the browser tests (Playwright cannot download its own browsers here).
[ ! -f scripts/browser.sh ] || bash scripts/browser.sh

# axe-core from the npm registry for the accessibility tests (tests/support/axe, pinned by its package-lock.json).
if [ ! -f tests/support/axe/node_modules/axe-core/axe.min.js ]; then
  if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  npm ci --prefix tests/support/axe --no-audit --no-fund --silent
fi

.venv/bin/ruff check widget_server tests bench
.venv/bin/mypy widget_server
# One worker per core, each taking whole test files (their module fixtures start a server once).
exec .venv/bin/python -m pytest -n auto --dist loadfile "$@"
