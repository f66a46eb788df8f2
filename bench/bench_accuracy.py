"""Accuracy benchmark: train with the defaults (or overrides) once per seed and report the test accuracy
over the seeds: each figure, their mean, minimum and maximum. Two figures per run: the project's own (the
prediction averaged over the image and its four one-pixel shifts, model.predict.log_probabilities), and the
single view's (the network's output for the image alone), from the same trained network.

    python bench/bench_accuracy.py                      # one epoch, seeds 101-120
    python bench/bench_accuracy.py --seeds 201-220      # 20 other seeds
    python bench/bench_accuracy.py --seeds 101-120,201-220,301-340,1000-1019   # the README's 100 seeds
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

import torch  # noqa: E402

import train  # noqa: E402
from model.predict import normalize  # noqa: E402
from utils.data import load_mnist  # noqa: E402


def seed_range(text):
    """'101-120,201-220' -> [101, ..., 120, 201, ..., 220]."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


@torch.no_grad()
def single_view_accuracy(model, data) -> float:
    """Percent of the test digits whose plain image alone the network classifies right."""
    model.eval()
    right = sum((model(normalize(data.test_images[start:start + 1000])).argmax(1).cpu()
                 == data.test_labels[start:start + 1000]).sum().item()
                for start in range(0, len(data.test_labels), 1000))
    return right / len(data.test_labels) * 100


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
    accuracies, single = [], []
    with tempfile.TemporaryDirectory() as models:
        for seed in args.seeds:
            config = train.Config(epochs=args.epochs, seed=seed, quiet=True, models_dir=models, **overrides)
            started = time.perf_counter()
            model, _, history = train.train(config, data, log=lambda message: None)
            accuracies.append(history[-1]["test_accuracy"])
            single.append(single_view_accuracy(model, data))
            print(f"seed {seed}: {accuracies[-1]:.2f}% (single view {single[-1]:.2f}%; loop "
                  f"{sum(e['train_seconds'] for e in history):.1f} s, run {time.perf_counter() - started:.1f} s)",
                  flush=True)
    for name, figures in (("test accuracy", accuracies), ("single view", single)):
        print(f"{name} over {len(figures)} seeds: mean {statistics.mean(figures):.3f}%, min {min(figures):.2f}%, "
              f"max {max(figures):.2f}%, {sum(a < 99.0 for a in figures)} under 99.00%")


if __name__ == "__main__":
    main()
