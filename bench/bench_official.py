"""Side by side with PyTorch's official MNIST example (github.com/pytorch/examples, mnist/main.py): one
epoch each, whole processes as a user runs them, alternating, on the same machine and the same MNIST files.

    git clone --depth 1 https://github.com/pytorch/examples /tmp/examples
    python bench/bench_official.py /tmp/examples/mnist/main.py [--rounds 3] [--baseline /tmp/before]

Each round runs `python main.py --epochs 1` (its own network, data loading and Adadelta; it reads
../data/MNIST/raw, which is pointed at this repo's MNIST folder) and `python train.py --epochs 1`, and
times each process from start to exit (imports, data, one epoch, test evaluation). Prints the medians,
their ratio, and each one's test accuracy, with the CPU, its core count and the torch version. --baseline DIR
also times another checkout of this repo in each round (`git worktree add /tmp/before COMMIT`): an A/B in one
sitting. Run it alone: a second busy process slows both several times over.
"""
import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from utils.data import load_mnist, raw_dir  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(command, cwd):
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, command))} failed: {result.stderr.strip()[-500:]}")
    return seconds, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official", type=Path, help="the official example's mnist/main.py")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating (default: %(default)s)")
    parser.add_argument("--baseline", type=Path, help="another checkout of this repo, timed in each round too")
    args = parser.parse_args()
    repos = {"this repo": REPO} | ({f"baseline {args.baseline}": args.baseline} if args.baseline else {})
    if not args.official.is_file():
        sys.exit(f"error: {args.official} is not a file: clone github.com/pytorch/examples and give its mnist/main.py")
    load_mnist(log=lambda message: None)  # fetched and verified before any timing
    print(f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.rounds} rounds of one epoch each")
    times = {"official example": []} | {name: [] for name in repos}
    accuracy = {}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"  # the example reads ../data/MNIST/raw
        data.mkdir()
        (data / "MNIST").symlink_to(raw_dir().parent.resolve(), target_is_directory=True)
        work = Path(folder) / "work"
        work.mkdir()
        for round_ in range(1, args.rounds + 1):
            seconds, out = timed([sys.executable, str(args.official.resolve()), "--epochs", "1"], cwd=work)
            times["official example"].append(seconds)
            found = re.search(r"Accuracy: (\d+)/(\d+)", out)
            accuracy["official example"] = f"{int(found[1]) / int(found[2]) * 100:.2f}%" if found else "?"
            for name, repo in repos.items():
                seconds, out = timed([sys.executable, "train.py", "--epochs", "1", "--quiet",
                                      "--models-dir", str(Path(folder) / "models")], cwd=repo)
                times[name].append(seconds)
                accuracy[name] = re.search(r"test loss [\d.]+ acc ([\d.]+%)", out)[1]
            print(f"round {round_}: " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items()),
                  flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:>16}: one epoch, whole process, median {median:.1f} s (min {min(times[name]):.1f}, "
              f"max {max(times[name]):.1f}); test accuracy of the last run {accuracy[name]}")
    for name in repos:
        ratio = medians[name] / medians["official example"]
        print(f"{name}: {ratio:.3f} of the official example's time (the example takes {1 / ratio:.1f}x as long)")


if __name__ == "__main__":
    main()
