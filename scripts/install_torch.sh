#!/bin/sh
# Install torch into the set-up's environment: the CPU or the CUDA build by what this machine has.
# Usage: install_torch.sh PYTHON SPEC VERSION
#   SPEC "auto": an NVIDIA GPU (nvidia-smi lists one) -> torch==VERSION from the package index, which
#   on Linux x86-64 is the CUDA build (several GB); no GPU -> the CPU build from PyTorch's CPU index
#   (about 200 MB), falling back to torch==VERSION from the package index where that index is not
#   reachable (a mirror, an offline wheel folder). Any other SPEC is passed to pip as it is.
# It says which build it chose and why, and what torch reports once installed.
set -eu
PY="$1"; SPEC="$2"; VERSION="$3"
CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
say() { echo "cllora set-up: $*"; }
if [ "$SPEC" != "auto" ]; then
    say "torch as asked: $SPEC"
    # shellcheck disable=SC2086  # SPEC may carry pip options (--index-url ...)
    "$PY" -m pip install --quiet $SPEC
elif gpus=$(nvidia-smi -L 2>/dev/null) && [ -n "$gpus" ]; then
    say "NVIDIA GPU found ($(echo "$gpus" | head -n 1)): installing the CUDA build, torch==$VERSION from the package index"
    "$PY" -m pip install --quiet "torch==$VERSION"
else
    say "no NVIDIA GPU (nvidia-smi lists none): installing the CPU build of torch==$VERSION from $CPU_INDEX"
    if ! "$PY" -m pip install --quiet --timeout 15 --retries 1 --index-url "$CPU_INDEX" "torch==$VERSION"; then
        say "$CPU_INDEX is not reachable or lacks torch==$VERSION: torch==$VERSION from the package index" \
            "(on the public index for Linux x86-64 that is the CUDA build, several GB; it runs on the CPU too)"
        "$PY" -m pip install --quiet "torch==$VERSION"
    fi
fi
"$PY" -c "import torch; print('cllora set-up: torch', torch.__version__, '| CUDA build:', torch.version.cuda or 'no (CPU build)', '| GPU usable now:', torch.cuda.is_available())"
