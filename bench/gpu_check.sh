#!/usr/bin/env bash
# Everything a machine with a GPU should run, in one command, with every output in one folder:
#
#     bash bench/gpu_check.sh OUT_DIR
#
# It installs nothing: the Python it runs ($PYTHON, else python3) must already have requirements.txt's
# packages (it says which are missing and stops). MNIST must be in data/ (or $MNIST_DATA_DIR), or
# reachable to fetch. In OUT_DIR, eight files (what the device tool brings back at most): machine.txt
# (the packages, GPU, driver, CPU, torch), data.txt, tests-device.txt
# (pytest -m "cuda or mps"), tests-all.txt (the whole suite), probes.txt (bench/device_probes.py: the
# label race, same seed twice, a GPU checkpoint opened with no GPU visible), bench.txt
# (bench/bench_train.py for every placement, hybrid at splits 1-3), bench-cpu-2-threads.txt (the CPU
# alone with 2 threads, to compare with laptops), and summary.txt (each step's exit status). On a machine
# without a GPU the device parts skip and say why.
set -uo pipefail
out=${1:?usage: bash bench/gpu_check.sh OUT_DIR}
cd "$(dirname "$0")/.."
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
: >"$out/summary.txt"

declare -A written  # the files this run has begun: a second step appends to its file
step() {  # step NAME FILE COMMAND...: run it, keep its output, record its exit status
  local name=$1 file=$2
  shift 2
  [[ -n ${written[$file]:-} ]] || : >"$out/$file"
  written[$file]=1
  local command="$*"
  echo "\$ ${command:0:200}" >>"$out/$file"
  "$@" >>"$out/$file" 2>&1
  local status=$?
  echo "$name: exit $status, output in $file" | tee -a "$out/summary.txt"
}

step requirements machine.txt "$python" -c '
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement
OPTIONAL = {"selenium"}  # the browser tests: they skip without Chromium, which a GPU machine lacks
missing = []
for line in open("requirements.txt"):
    line = line.split("#")[0].strip()
    if line:
        requirement = Requirement(line)
        try:
            found = version(requirement.name)
            note = "" if requirement.specifier.contains(found, prereleases=True) else "  (outside the bounds)"
            print(f"{requirement.name} {found}{note}")
        except PackageNotFoundError:
            if requirement.name in OPTIONAL:
                print(f"{requirement.name}: not installed (only tests that skip here need it)")
            else:
                missing.append(requirement.name)
if missing:
    sys.exit("missing: " + ", ".join(missing))'
if grep -q "^missing:" "$out/machine.txt"; then
  cat "$out/machine.txt"
  exit 1
fi
step machine machine.txt bash -c "nvidia-smi; lscpu | grep -E 'Model name|^CPU\\(s\\)'; \"$python\" -c '
import torch
print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"cuDNN\", torch.backends.cudnn.version(),
      \"threads\", torch.get_num_threads())
print(\"CUDA devices:\", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
print(\"MPS:\", torch.backends.mps.is_available())'"
step data data.txt "$python" -m utils.data
step tests-device tests-device.txt "$python" -m pytest -m "cuda or mps" -v -rs
step tests-all tests-all.txt "$python" -m pytest -rs
step probes probes.txt "$python" bench/device_probes.py
step bench bench.txt "$python" bench/bench_train.py --runs 3
step bench-cpu-2-threads bench-cpu-2-threads.txt "$python" bench/bench_train.py --runs 3 --cpu-only --threads 2
