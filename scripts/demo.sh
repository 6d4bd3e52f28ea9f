#!/usr/bin/env bash
# The first command: install everything, create the demo tenant, persona and key, and serve on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/widget-server demo "$@"
