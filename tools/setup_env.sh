#!/usr/bin/env bash
# Creates .venv and installs megatron-inserter with everything the demo and the tests need.
# Torch first: on a machine without a GPU pin the CPU build (2.13.0) so pip never pulls the CUDA stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${INSERTER_EXTRAS:-dev,convert,eval,tts}

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' || {
  echo "error: megatron-inserter needs Python >= 3.11 (found $($PYTHON --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }

if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "[setup] installing espeak-ng (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng libespeak-ng1) >/dev/null
  else
    echo "error: espeak-ng is missing and this is not root: run 'sudo apt-get install espeak-ng' and retry" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip
if ! $VPY -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] GPU found: installing the default CUDA torch"
    $VPY -m pip install -q "torch>=2.6"
  else
    echo "[setup] no GPU: installing torch==2.13.0 (CPU)"
    $VPY -m pip install -q "torch==2.13.0"
  fi
fi
echo "[setup] installing megatron-inserter[$EXTRAS]"
$VPY -m pip install -q -e ".[${EXTRAS}]"
touch .venv/.installed
echo "[setup] done"
