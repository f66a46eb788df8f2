"""Speed benchmark: median one-epoch training-loop time, images/s and peak memory for each placement
this machine offers, then the median wall time of the whole `python train.py --epochs 1` process.

    python bench/bench_train.py [--runs 5] [--batch-size 64]

Targets on a 2-core CPU (issue 4): training loop <= 6 s, whole process <= 12 s (medians).
"""
import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import train  # noqa: E402
from model.placement import Machine  # noqa: E402
from utils.data import load_mnist  # noqa: E402


def placements(machine):
    yield "single", "cpu"
    if machine.accelerator():
        yield "single", machine.accelerator()
        yield "hybrid", machine.accelerator()


def peak_memory_mb(device):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=train.Config.batch_size)
    args = parser.parse_args()
    data = load_mnist(log=lambda message: None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.runs} runs each")
    with tempfile.TemporaryDirectory() as models:
        for mode, device in placements(Machine.detect()):
            seconds, accuracies = [], []
            for run in range(args.runs):
                config = train.Config(placement=mode, device=device, batch_size=args.batch_size, seed=run + 1,
                                      quiet=True, models_dir=models)
                _, _, history = train.train(config, data=data, log=lambda message: None)
                seconds.append(history[-1]["train_seconds"])
                accuracies.append(history[-1]["test_accuracy"])
            median = statistics.median(seconds)
            print(f"{mode:>6} {device:<7} epoch loop: median {median:.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}), "
                  f"{60000 / median:,.0f} img/s, peak memory {peak_memory_mb(device):,.0f} MB, "
                  f"test accuracy {min(accuracies):.2f}-{max(accuracies):.2f}%")
        walls = []
        for run in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "train.py", "--epochs", "1", "--quiet", "--models-dir", models],
                           cwd=REPO, check=True, capture_output=True)
            walls.append(time.perf_counter() - started)
        child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"whole `python train.py --epochs 1`: median {statistics.median(walls):.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}), peak memory {child_peak:,.0f} MB")


if __name__ == "__main__":
    main()
