#!/usr/bin/env bash
# The GPU checks of issues 3, 7, 12 and 13, for a lent GPU machine (Python 3.12 with CUDA torch, no
# network). Fetch deap and mlxtend wheels first with ../shared/tools/gpu-wheels (they land in
# .whl/), take .whl along, and run from the repo root:
#
#   bash tools/gpu_checks.sh 1    # gpu-marked tests, CUDA latency (eager and graph), trainer_speed
#   bash tools/gpu_checks.sh 2    # gpu tests, parallel_workers (1 vs 4 workers), a 4-worker `nas search`, NB201 speed
#   bash tools/gpu_checks.sh mf   # issue 13: benchmarks/multifidelity.py on cnn:mnist5k with --device cuda, under 5 min;
#                                 # its table goes to benchmarks/results/multifidelity_gpu.txt (and $OUT)
#   bash tools/gpu_checks.sh guided  # issue 12: benchmarks/guided_training.py (auto vs plain) on cnn:mnist5k with --device cuda,
#                                 # 30 networks x 3 seeds x 4 searches; benchmarks/results/guided_training_gpu.txt
#
# Logs go to $OUT (or /tmp/gpu-checks) as well as to the terminal.
set -u
stage=${1:-1}
out=${OUT:-/tmp/gpu-checks}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

step() {  # step NAME SECONDS CMD...: run with a time limit, log to $out/NAME.log
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > >(tee "$out/$name.log") 2>&1
  echo "=== $name: exit $? after $((SECONDS - t0)) s"
}

if [ "$stage" = mf ]; then
  # 2 seeds x (3 methods x 2 objective sets + Optuna) x 12 s = 168 s of runs, plus loading and testing the picks.
  # Optuna is the peer when its wheel was brought along (.whl/); without it the nas methods run alone.
  peer=""
  python3 -c "import optuna" 2>/dev/null || peer="--no-optuna"
  step multifidelity_gpu 290 python3 benchmarks/multifidelity.py --device cuda --tasks cnn:mnist5k --seconds 12 --seeds 2 --epochs 9 $peer
  mkdir -p benchmarks/results
  { echo "# command: python3 benchmarks/multifidelity.py --device cuda --tasks cnn:mnist5k --seconds 12 --seeds 2 --epochs 9 $peer   (bash tools/gpu_checks.sh mf)"
    cat "$out/multifidelity_gpu.log"; } > benchmarks/results/multifidelity_gpu.txt
  cp benchmarks/results/multifidelity_gpu.txt "$out/"
  exit 0
fi

if [ "$stage" = guided ]; then
  # issue 12: auto against plain evolution / nsga2 on real training, cnn on mnist5k, 30 networks, 3 seeds, 3 epochs each
  step guided_training_gpu 590 python3 benchmarks/guided_training.py --device cuda --budget 30 --seeds 3 --epochs 3
  mkdir -p benchmarks/results
  { echo "# command: python3 benchmarks/guided_training.py --device cuda --budget 30 --seeds 3 --epochs 3   (bash tools/gpu_checks.sh guided)"
    cat "$out/guided_training_gpu.log"; } > benchmarks/results/guided_training_gpu.txt
  cp benchmarks/results/guided_training_gpu.txt "$out/"
  exit 0
fi

if [ "$stage" = 1 ]; then
  step gpu_tests 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_train.py tests/test_measure.py
  step latency_eager 60 python3 benchmarks/latency_stability.py --device cuda --mode eager
  step latency_graph 60 python3 benchmarks/latency_stability.py --device cuda --mode cuda_graph
  step trainer_speed 420 python3 benchmarks/trainer_speed.py
else
  step gpu_tests 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_train.py tests/test_measure.py
  step parallel 300 python3 benchmarks/parallel_workers.py --budget 32
  step search_cuda 120 python3 -m nas search --space nb201 --data mnist5k --budget 8 --epochs 2 --device cuda --workers 4 --backend process --run /tmp/run-cuda
  step trainer_speed_nb201 150 python3 benchmarks/trainer_speed.py --only nb201 --epochs 1
fi
