#!/usr/bin/env bash
# Creates ./.venv and installs widget_server into it (with the test extras when given "test").
# Idempotent: a second run with an unchanged pyproject.toml only checks and returns.
# The first run on a machine builds llama-cpp-python from source (about 6 minutes on 2 cores, once per
# machine: the wheel is cached); long steps print a line every 20 s so that nobody thinks it hung.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
LLAMA_VERSION="0.3.36"
# llama.cpp built for portable AVX2, not -march=native: its AMX kernels crash on some VMs (seen here).
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
WHEELHOUSE="${WIDGET_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/widget_server/wheels}"
TICK_S=20

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "install: Python 3.11 or newer is needed" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$( (cat pyproject.toml scripts/install.sh; echo "$extras") | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

started=$SECONDS
elapsed() { local s=$((SECONDS - ${1:-$started})); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# Runs a long command with its output in LOG, printing "install: LABEL... 1m40s" every TICK_S seconds (with the
# build's last "[ 42%]" or "[120/310]" step when it prints one), and the log's tail if the command fails.
run_logged() {
  local label="$1" log="$2" step_started=$SECONDS pid step
  shift 2
  "$@" >"$log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null' EXIT
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq "$TICK_S"); do kill -0 "$pid" 2>/dev/null && sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      step=$(grep -aoE '\[ *[0-9]{1,3}%\]|\[[0-9]+/[0-9]+\]' "$log" | tail -n1 || true)
      echo "install: $label... $(elapsed "$step_started")${step:+ $step}"
    fi
  done
  trap - EXIT
  if ! wait "$pid"; then
    echo "install: $label failed after $(elapsed "$step_started"); the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  echo "install: $label: done in $(elapsed "$step_started")"
}

logs=".venv/install-logs"
mkdir -p "$logs"
echo "install: into ./.venv${extras:+ with the $extras extras}"
.venv/bin/python -m pip install --quiet --upgrade pip
wheel=$(ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "install: building llama-cpp-python $LLAMA_VERSION from source, once per machine (about 6 minutes on" \
    "2 cores; cached in $WHEELHOUSE)"
  mkdir -p "$WHEELHOUSE"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" run_logged "building llama-cpp-python" "$logs/llama-cpp-python.log" \
    .venv/bin/python -m pip wheel --verbose --no-deps --no-cache-dir -w "$WHEELHOUSE" "llama-cpp-python==$LLAMA_VERSION"
  wheel=$(ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n1)
fi
.venv/bin/python -m pip install --quiet "$wheel"
target="."
[ "$extras" != "test" ] || target=".[test]"
run_logged "installing widget_server and its dependencies" "$logs/pip-install.log" \
  .venv/bin/python -m pip install --find-links "$WHEELHOUSE" -e "$target"
rm -f .venv/.installed-*
touch "$stamp"
echo "install: ready in $(elapsed)"
