#!/bin/sh
# The GPU device check (benchmarks/device_check.py): device, precision, steps/s, % of bf16 peak,
# same-seed and resume identity, peak memory, hours of each full preset. About a minute or two on
# an H100, at most 8 minutes; no network, no embedded weights (a random SmolLM2-135M-shaped model).
# Exit 77: no accelerator here, nothing measured.
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec timeout 480 "$PY" benchmarks/device_check.py "$@"
