"""Speed benchmark: `python train.py --epochs 1` run several times, each in a fresh process exactly as a
user runs it, for each placement this machine offers. Prints the median training-loop time of the epoch
(as train.py measures it, read back from the checkpoint) and apart from it the first 25 steps (where an
accelerator starts up: CUDA context, cuDNN, kernels) and the steady state (the rest, scaled to a whole
epoch), images/s, the median wall time of the whole process (imports, data, training, evaluation,
saving), the process's peak memory and the accelerator's (CUDA: the most its tensors held during the
epoch and its evaluation; MPS: what its driver holds at the end), and the test accuracy range.

    python bench/bench_train.py [--runs 5]              # every placement: single cpu, single and hybrid
    python bench/bench_train.py --cpu-only --threads 2   # the CPU alone, with 2 threads (a laptop's figures)

With an accelerator, hybrid runs at each split point (--split 1, 2 and 3: how many of the first layers run
on it).

Run i uses seed i, so the accuracy range is over seeds 1..runs. Run it alone: on a 2-core machine a
second busy process slows training several times over. A shared VM's speed also drifts; the speed
check before and after (a fixed conv workload, ms) tells a slow spell from a slow change.
Targets on a 2-core CPU (issue 4): training loop <= 6 s, whole process <= 12 s (medians).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.peak import run_measured  # noqa: E402
from model.placement import Machine  # noqa: E402


def placements(machine, cpu_only=False):
    """(mode, device, split) for each placement to measure."""
    yield "single", "cpu", 2
    if machine.accelerator() and not cpu_only:
        yield "single", machine.accelerator(), 2
        for split in (1, 2, 3):
            yield "hybrid", machine.accelerator(), split


def train_command(mode, device, split, seed, folder) -> list[str]:
    """The command line of one run: --split only where the run is hybrid (train.py refuses it otherwise)."""
    return [sys.executable, "train.py", "--epochs", "1", "--quiet", "--seed", str(seed), "--placement", mode,
            "--device", device, *(["--split", str(split)] if mode == "hybrid" else []), "--models-dir", str(folder)]


def run_once(mode, device, split, seed, models, threads=None):
    """One `python train.py --epochs 1` process: (loop seconds, first steps' seconds, steady-state epoch seconds,
    wall seconds, peak MB, device peak MB or None, test accuracy)."""
    folder = Path(tempfile.mkdtemp(dir=models))
    command = train_command(mode, device, split, seed, folder)
    env = os.environ | ({"OMP_NUM_THREADS": str(threads)} if threads else {})  # torch's CPU threads
    started = time.perf_counter()
    process, peak_mb = run_measured(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - started  # a bare Python start-up (the launcher) included
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed: {process.stderr.decode().strip()}")
    (checkpoint,) = folder.glob("*.pth")
    last = torch.load(checkpoint, map_location="cpu", weights_only=True)["history"][-1]
    first = last["first_steps"]
    steady = (last["train_seconds"] - first["seconds"]) * 60000 / (60000 - first["images"])
    return (last["train_seconds"], first["seconds"], steady, wall, peak_mb, last["device_peak_mb"],
            last["test_accuracy"])


def machine_speed():
    """A fixed piece of this workload (conv2's forward and backward, 300 times), in ms per step: it moves
    with the machine's speed, not with the code, so runs taken at different times can be compared."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(10, 20, 3, bias=False)
    images = torch.randn(64, 10, 14, 14, requires_grad=True)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(300):
            conv(images).sum().backward()
        times.append((time.perf_counter() - started) / 300 * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="processes per placement (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="CPU threads of each run (OMP_NUM_THREADS; default: torch's "
                                                    "choice, one per core)")
    parser.add_argument("--cpu-only", action="store_true", help="measure the CPU placement alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # the speed check too
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{args.runs} runs of `python train.py --epochs 1` per placement (seeds 1-{args.runs})")
    with tempfile.TemporaryDirectory() as models:
        for mode, device, split in placements(Machine.detect(), args.cpu_only):
            before = machine_speed()
            runs = [run_once(mode, device, split, seed, models, args.threads) for seed in range(1, args.runs + 1)]
            after = machine_speed()
            loops, firsts, steadies, walls, peaks, device_peaks, accuracies = zip(*runs)
            loop = statistics.median(loops)
            device_peak = "" if device == "cpu" else f", {device} {max(device_peaks):,.0f} MB"
            name = f"{mode}, split {split}" if mode == "hybrid" else mode
            print(f"{name:>15} {device:<7} epoch loop median {loop:.2f} s (min {min(loops):.2f}, max {max(loops):.2f}; "
                  f"first 25 steps {statistics.median(firsts):.2f} s, "
                  f"steady state {statistics.median(steadies):.2f} s), "
                  f"{60000 / loop:,.0f} img/s | whole process median {statistics.median(walls):.2f} s "
                  f"(min {min(walls):.2f}, max {max(walls):.2f}) | "
                  f"peak memory host {max(peaks):,.0f} MB{device_peak} | "
                  f"test accuracy {min(accuracies):.2f}-{max(accuracies):.2f}% | "
                  f"machine speed check {before:.2f} ms before, {after:.2f} ms after")


if __name__ == "__main__":
    main()
