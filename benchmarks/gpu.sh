#!/usr/bin/env bash
# GPU numbers in one shot (issue 22): install this checkout, then `benchmarks/gpu.py` within the time budget.
#
#   bash benchmarks/gpu.sh                      # on a CUDA machine: results in benchmarks/results/
#   bash benchmarks/gpu.sh --out "$OUT"         # on a lent device machine: results come back from $OUT
#   bash benchmarks/gpu.sh --device cpu --dry-run --out /tmp/x   # the CPU check of this script (tests run it)
#   bash benchmarks/gpu.sh --wheels             # here, with a package registry: mmseg's wheels into .whl/
#
# Offline: peers (mmseg ...) come from wheels carried in .whl/ (see benchmarks/README.md), the checkout itself is
# installed with `pip install -e . --no-deps --no-build-isolation` (its dependencies are already there: torch, timm
# ...), and where that fails it runs from the checkout through PYTHONPATH. A dry run installs nothing.
# BUDGET_S (default 480) is the whole run's wall-clock limit, this script's installation included.
# TensorRT (R-50-D8 as an fp16 engine, and tests/deploy/test_tensorrt.py's GPU tests) runs where the device image
# already has the `tensorrt` package: its wheels (over 1 GB, from pypi.nvidia.com) are not carried; without it the
# results say "tensorrt skipped: tensorrt not installed".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# mmseg 1.2.2 and what it needs beyond the device image (which has torch, timm, opencv, scipy, matplotlib, rich,
# regex, pyyaml ...), as wheels for CPython 3.12 on x86-64: about 4 MB.
PEER_WHEELS=(mmengine==0.10.7 mmcv-lite==2.1.0 mmsegmentation==1.2.2 ftfy wcwidth addict yapf termcolor prettytable
    platformdirs)
if [ "${1:-}" = --wheels ]; then
    exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${PEER_WHEELS[@]}"
fi
budget=${BUDGET_S:-480}
dry=0
for arg in "$@"; do
    if [ "$arg" = --dry-run ]; then dry=1; fi
done
if [ "$dry" = 0 ]; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/deeplabv3p-peers .whl/*.whl; then
            export PYTHONPATH=/tmp/deeplabv3p-peers${PYTHONPATH:+:$PYTHONPATH}
        else
            echo "gpu.sh: the wheels in .whl/ did not install; the run goes on without those peers" >&2
        fi
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
        || echo "gpu.sh: pip install -e . failed; running from the checkout (PYTHONPATH)" >&2
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
exec "$PYTHON" benchmarks/gpu.py --budget-s $((budget - SECONDS)) "$@"
