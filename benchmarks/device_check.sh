#!/usr/bin/env bash
# Issue 5's GPU checks as one prepared run for a lent H100/H200 node (the `device` tool: Python 3.12 with a CUDA
# torch there, no network, 15 minutes of device time a session), in two halves:
#
#   bash benchmarks/device_check.sh download   # here, with PyPI: the wheels the node lacks (mace-torch, e3nn 0.4.4,
#                                              # ase, vesin, TorchSim, ...) into .whl/ (git-ignored), and the one
#                                              # structure file the benchmarks read (../shared, which does not
#                                              # travel) into .whl/shared/ for the run only; never committed
#   device run: command "bash benchmarks/device_check.sh run", carry [".whl"], timeout_s 560
#   or, to also train recipes/batio3_gpu.yaml there in one lease: "bash benchmarks/device_check.sh run+train 4"
#
# `run` installs the wheels into /tmp/site, then: CUDA against the CPU (benchmarks/cuda_vs_cpu.py: calculator
# and field MD, float64), and md_vs_peers on CUDA with eight batched replicas (goals there: >= 3x ASE for one
# 1080-atom cell, >= 10x for eight 135-atom replicas), then the CPU benchmark on the node's 16 cores (batching's
# CPU gain with more than two cores). Logs and JSON go to $OUT (the tool brings them back).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(mace-torch==0.3.16 e3nn==0.4.4 ase==3.29.0 matscipy==1.3.1 torch-ema==0.3 lmdb==3.0.0 orjson==3.11.7
        vesin==0.6.2 vesin-torch==0.6.2 torch-sim-atomistic==0.3.0 tables==3.11.1 numexpr==2.14.2
        ConfigArgParse==1.9.0 prettytable==3.19.0 wcwidth==0.7.0)
STRUCTURE=data/batio3-allegro-pol/BaTiO3.xyz

case "${1:-}" in
download)
  platforms=()
  for n in 28 27 17; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
  mkdir -p ".whl/shared/$(dirname "$STRUCTURE")"
  cp "../shared/$STRUCTURE" ".whl/shared/$STRUCTURE"
  du -sh .whl
  ;;
run|run+train)
  # run+train MINUTES: the same checks (without the 16-core CPU half), then recipes/batio3_gpu.yaml trained for
  # MINUTES of wall time on the GPU; its checkpoints, metrics and log come back under $OUT/gpu_train/.
  out="${OUT:-runs/device}"
  mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
  [ -e ../shared ] || ln -s "$PWD/.whl/shared" ../shared
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
  python3 -c "import torch, mace, e3nn, vesin_torch, torch_sim; print('torch', torch.__version__, 'e3nn', e3nn.__version__)"
  status=0
  timeout 100 python3 benchmarks/cuda_vs_cpu.py 2>&1 | tee "$out/cuda_vs_cpu.log" || status=1
  if [ "$1" = run ]; then
    timeout 240 python3 benchmarks/md_vs_peers.py --device cuda --steps 20 --repeats 3 --batched-replicas 8 \
      2>&1 | tee "$out/md_vs_peers_cuda.log" || status=1
    # The node's 16 CPU cores: does batching gain more on a CPU with more cores than CI's two? (last, optional)
    timeout 150 python3 benchmarks/md_vs_peers.py --device cpu --steps 5 --repeats 3 --sizes 1 2 \
      2>&1 | tee "$out/md_vs_peers_cpu16.log" || true
  else
    timeout 170 python3 benchmarks/md_vs_peers.py --device cuda --steps 20 --repeats 2 --batched-replicas 8 \
      2>&1 | tee "$out/md_vs_peers_cuda.log" || status=1
    minutes="${2:?run+train needs the training minutes}"
    run_dir=/tmp/gpu_train
    mkdir -p "$out/gpu_train"
    timeout "$(awk -v m="$minutes" 'BEGIN{print int(m * 60 + 90)}')" python3 -m ferronn.train --config recipes/batio3_gpu.yaml --out "$run_dir" \
      --device cuda --set train.max_minutes="$minutes" 2>&1 | tee "$out/gpu_train/train.log" || status=1
    for f in energy.ckpt born.ckpt metrics.json; do [ -e "$run_dir/$f" ] && cp "$run_dir/$f" "$out/gpu_train/"; done
    cp "$run_dir"/logs/version_0/metrics.csv "$out/gpu_train/" 2>/dev/null || true
  fi
  exit "$status"
  ;;
*)
  echo "usage: bash benchmarks/device_check.sh download|run" >&2
  exit 2
  ;;
esac
