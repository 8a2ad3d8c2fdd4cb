#!/usr/bin/env bash
# The GPU checks of issue 22 as one prepared run, for a machine with CUDA, a newer PyTorch and no
# package registry (nasflow's training path needs torch, numpy, scikit-learn, tqdm and safetensors;
# not DGL or Optuna). Results go to $OUT (default gpu-out/): the CUDA tests, the throughput table of
# benchmarks/training_speed.py, the CPU/GPU agreement of benchmarks/training_agreement.py, and
# `nasflow search` on the GPU end to end, killed and resumed mid-training, and issue 20's ASHA search of 4 workers
# on the GPU, killed and resumed (benchmarks/asha_kill_resume.py).
#     bash benchmarks/gpu_checks.sh                 # everything, about 5 minutes on an H200
#     SKIP="speed agreement" bash benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-gpu-out}
SKIP=${SKIP:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NASFLOW_CACHE="$(mktemp -d)"
# nasflow without pip: the rooms copied under one package, as setup.py's package_dir installs them
# (python -P below keeps the checkout's own nasflow/ folder, which lacks the rooms, off sys.path)
site=$(mktemp -d)
mkdir -p "$site/nasflow"
cp -r nasflow/. "$site/nasflow/"
for room in spaces predictors searchers cli; do cp -r "$room" "$site/nasflow/$room"; done
export PYTHONPATH="$site"

step() {  # step NAME SECONDS COMMAND...: run unless NAME is in $SKIP, log to $OUT/NAME.log
  local name=$1 seconds=$2
  shift 2
  case " $SKIP " in *" $name "*) return ;; esac
  echo "== $name"
  timeout "$seconds" "$@" 2>&1 | tee "$OUT/$name.log"
}

e2e() {  # nasflow search on the GPU, then a 30-epoch training killed mid-way and resumed
  local data=$OUT/cifar_shaped.npz
  python3 -P -m nasflow.cli.main search --space nb201 --searcher evolution --budget 8 --device cuda \
      --cuda-graph --out "$OUT/digits-run" || return
  python3 -P -c "import numpy as np; r = np.random.default_rng(0); y = r.integers(0, 10, 20000)
x = r.standard_normal((20000, 3, 32, 32), dtype=np.float32) + y[:, None, None, None] / 5
np.savez('$data', x=x, y=y)"
  python3 -P -m nasflow.cli.main search --space nb201 --searcher random --budget 1 --data "$data" --recipe nb201 \
      --epochs 30 --device cuda --cuda-graph --checkpoint-every 0 --out "$OUT/killed" &
  local pid=$!
  sleep "${KILL_AFTER:-15}"
  kill -9 $pid
  ls "$NASFLOW_CACHE/training/checkpoints"
  python3 -P -m nasflow.cli.main search --resume "$OUT/killed" --device cuda --cuda-graph --checkpoint-every 0
  python3 -P -c "import json; r = [json.loads(l) for l in open('$OUT/killed/journal.jsonl')][-1]
print('resumed from epoch', r['extra']['resumed_from_epoch'], 'valid', r['valid'], 'images/s', r['extra']['images_per_s'])"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/machine.txt"
step tests "${TESTS_S:-120}" python3 -P -m pytest -q -p no:cacheprovider tests/test_training_cuda.py tests/test_augment.py
step e2e "${E2E_S:-150}" bash -c "$(declare -f e2e); OUT=$OUT e2e"
step asha "${ASHA_S:-300}" python3 -P benchmarks/asha_kill_resume.py --workers 4 --budget-epochs 300 --device cuda \
    --out "$OUT/asha_kill"
step speed "${SPEED_S:-300}" python3 -P benchmarks/training_speed.py --cpu-images 512 --shared-images 10240 \
    --json "$OUT/speed.json"
step agreement "${AGREE_S:-130}" python3 -P benchmarks/training_agreement.py --json "$OUT/agreement.json"
