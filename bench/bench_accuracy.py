"""Accuracy benchmark: train with the defaults (or overrides) once per seed and report the test accuracy
over the seeds: each figure, their mean, minimum and maximum.

    python bench/bench_accuracy.py                      # one epoch, seeds 101-120
    python bench/bench_accuracy.py --seeds 201-220      # 20 other seeds
    python bench/bench_accuracy.py --epochs 15 --seeds 1-4
    python bench/bench_accuracy.py --set batch_size=64 --set lr=0.2

Every run is train.train(), the engine of `python train.py`, in this process: the same seed gives the same
figure as `python train.py --seed S` (the data is loaded once; nothing is saved but in a temporary folder).
Judge a change on many seeds: one seed's figure moves by 0.1-0.2 points with the seed alone.
"""
import argparse
import ast
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train  # noqa: E402
from utils.data import load_mnist  # noqa: E402


def seed_range(text):
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def override(text):
    name, _, value = text.partition("=")
    if name not in {field.name for field in fields(train.Config)}:
        raise argparse.ArgumentTypeError(f"{name!r} is not a field of train.Config")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=seed_range, default=seed_range("101-120"), help="A-B (default: 101-120)")
    parser.add_argument("--epochs", type=int, default=train.Config.epochs, help="(default: %(default)s)")
    parser.add_argument("--set", type=override, action="append", default=[], metavar="FIELD=VALUE",
                        help="override a train.Config default, e.g. batch_size=64")
    args = parser.parse_args()
    data = load_mnist(log=lambda message: None)
    overrides = dict(args.set)
    print(f"{len(args.seeds)} seeds ({args.seeds[0]}-{args.seeds[-1]}), {args.epochs} epoch(s)"
          + "".join(f", {name}={value}" for name, value in overrides.items()), flush=True)
    accuracies = []
    with tempfile.TemporaryDirectory() as models:
        for seed in args.seeds:
            config = train.Config(epochs=args.epochs, seed=seed, quiet=True, models_dir=models, **overrides)
            started = time.perf_counter()
            _, _, history = train.train(config, data, log=lambda message: None)
            accuracies.append(history[-1]["test_accuracy"])
            print(f"seed {seed}: {accuracies[-1]:.2f}% (loop {sum(e['train_seconds'] for e in history):.1f} s, "
                  f"run {time.perf_counter() - started:.1f} s)", flush=True)
    print(f"test accuracy over {len(accuracies)} seeds: mean {statistics.mean(accuracies):.3f}%, "
          f"min {min(accuracies):.2f}%, max {max(accuracies):.2f}%, "
          f"{sum(a < 99.0 for a in accuracies)} under 99.00%")


if __name__ == "__main__":
    main()
