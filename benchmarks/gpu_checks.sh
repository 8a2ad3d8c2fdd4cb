#!/usr/bin/env bash
# The GPU checks of issue 22 as one prepared run, for a machine with CUDA, a newer PyTorch and no
# package registry (nasflow's training path needs torch, numpy, scikit-learn, tqdm and safetensors;
# not DGL or Optuna). Results go to $OUT (default gpu-out/): the CUDA tests, the throughput table of
# benchmarks/training_speed.py and the CPU/GPU agreement of benchmarks/training_agreement.py.
#     bash benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NASFLOW_CACHE="$(mktemp -d)"
# nasflow without pip: the rooms copied under one package, as setup.py's package_dir installs them
site=$(mktemp -d)
mkdir -p "$site/nasflow"
cp -r nasflow/. "$site/nasflow/"
for room in spaces predictors searchers cli; do cp -r "$room" "$site/nasflow/$room"; done
export PYTHONPATH="$site"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/machine.txt"
timeout "${TESTS_S:-120}" python3 -m pytest -q -p no:cacheprovider tests/test_training_cuda.py tests/test_augment.py \
    2>&1 | tee "$OUT/cuda_tests.log"
timeout "${SPEED_S:-300}" python3 benchmarks/training_speed.py --cpu-images 512 --shared-images 10240 \
    --json "$OUT/speed.json" 2>&1 | tee "$OUT/speed.log"
timeout "${AGREE_S:-130}" python3 benchmarks/training_agreement.py --json "$OUT/agreement.json" \
    2>&1 | tee "$OUT/agreement.log"
