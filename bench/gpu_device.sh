#!/usr/bin/env bash
# The GPU benchmark on a machine that has CUDA PyTorch and transformers but no package registry
# (such as a lent GPU machine): the few packages it lacks travel as wheels in bench/wheelhouse
# (`make gpu-wheels` fills it, for Python 3.12), are installed into a private folder without
# touching the machine's torch, and `python -m bench.gpu_svd` (or the benchmark `--bench` names)
# runs with the other arguments. Results go to $OUT when set (else bench/results): <bench>.json and
# the run's log <bench>.log (output unbuffered, so a run stopped by a time limit still shows how far it
# got). TAG=name gives <bench>-name.json and .log, for several runs of one benchmark in one call.
#
#   bash bench/gpu_device.sh                          # full size, fp16, fast path
#   TAG=compiled bash bench/gpu_device.sh --compile --no-reference
#   bash bench/gpu_device.sh --bench sweep_batching --repeats 2   # figure c at full size
set -euo pipefail
cd "$(dirname "$0")/.."
bench=gpu_svd
if [[ ${1:-} == --bench ]]; then
    bench=$2
    shift 2
fi
WHEELS=${WHEELS:-bench/wheelhouse}
PY=${PYTHON:-python3}
deps=$(mktemp -d)
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if ((${#wheels[@]} == 0)); then
    echo "no wheels in $WHEELS: run 'make gpu-wheels' where a package registry is reachable" >&2
    exit 2
fi
"$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$deps" "${wheels[@]}"
export PYTHONPATH="$deps:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-bench/results}
name=$bench${TAG:+-$TAG}
mkdir -p "$out"
{
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    "$PY" -m "bench.$bench" "$@" --out "$out/$name.json"
} 2>&1 | tee "$out/$name.log"
