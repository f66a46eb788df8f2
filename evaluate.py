"""Evaluate a saved checkpoint (one from train.py, or the model artifact of a CI run), or read digits
from image files with it.

    python evaluate.py models/model_cpu_20261123_130720.pth     # test accuracy, per class, vs. recorded
    python evaluate.py models                                    # the newest checkpoint in a folder
    python evaluate.py models --image my_digit.png photo.jpg     # predict the digit in each image
    python evaluate.py mnist-model-12.zip                        # a CI artifact as GitHub downloads it
    python evaluate.py models --list                             # a table of the checkpoints, newest first
    python evaluate.py models --min-accuracy 95 --summary "$GITHUB_STEP_SUMMARY"  # the CI job's verdict page

The checkpoint is read with weights-only loading (no pickled code runs) and the network is rebuilt
from what it records, placed for this machine.
"""
import sys
import time
from pathlib import Path

# utils first: importing it arms the Ctrl-C guard before torch loads (utils/__init__.py)
from utils import flags
from utils.errors import OneLineErrors, UserError, run_cli, shown

import torch

from model.checkpoint import load_model
from model.network import BUDGET
from model.placement import describe
from model.predict import evaluate, log_probabilities, normalize
from utils.checkpoint import checkpoint_file, every_checkpoint, load_checkpoint
from utils.files import kind_of, reporting
from utils.images import load_digit

TEST_SET_ONLY = ("data_dir", "min_accuracy", "summary", "artifact")  # the flags only the test set's evaluation reads
TOLERANCE = 0.1  # percentage points (10 test digits): floating-point differences between machines or
#                  devices can flip a few borderline digits; more than this means other weights or data


def parse_args(argv):
    parser = OneLineErrors(description="Evaluate a checkpoint on the MNIST test set, or predict digits in images.")
    parser.add_argument("checkpoint", metavar="PATH", help="a .pth checkpoint, a folder (its newest checkpoint) or "
                                                           "a zip of checkpoints (a downloaded CI artifact)")
    parser.add_argument("--image", nargs="+", metavar="FILE", help="image files of handwritten digits to predict")
    parser.add_argument("--list", action="store_true", help="a table of every checkpoint in PATH (a folder or a zip), "
                                                            "newest first: its network, recipe and recorded accuracy")
    parser.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DATA_DIR or data/)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: detect)")
    parser.add_argument("--min-accuracy", type=flags.percentage,
                        help="exit 1 if the measured test accuracy (%%) is below this")
    parser.add_argument("--summary", metavar="FILE", help="with --min-accuracy: also append the result at a glance "
                        "as Markdown to FILE (a CI job summary: $GITHUB_STEP_SUMMARY on GitHub)")
    parser.add_argument("--artifact", action="append", default=[], metavar="NAME",
                        help="with --summary: the name of an artifact the CI run uploads (the model's first)")
    args = parser.parse_args(argv)
    if args.list or args.image:  # a flag the mode does not read would be ignored in silence
        mode, unused = ("--list", TEST_SET_ONLY + ("image", "device")) if args.list else ("--image", TEST_SET_ONLY)
        ignored = parser.given(args, unused)
        if ignored:
            parser.error(f"{', '.join(ignored)}: not read with {mode}, which "
                         f"{'lists the checkpoints' if args.list else 'reads the images'} alone")
    if args.summary and args.min_accuracy is None:
        parser.error("--summary needs --min-accuracy: the bar its table checks")
    if args.artifact and not args.summary:
        parser.error("--artifact needs --summary: the summary names the artifacts")
    if args.summary:  # checked before the evaluation, not found wrong after it
        kind, folder = kind_of(args.summary, "write"), Path(args.summary).parent
        if kind not in ("file", "missing"):  # a FIFO would block the verdict
            raise UserError(f"--summary {args.summary} is {kind}, not a file to append to")
        if kind_of(folder, "write in") != "folder":
            raise UserError(f"--summary {args.summary}: there is no folder {folder} to write it in")
    return args


def test_set_figures(model, data):
    """(loss, accuracy in percent, correct as a bool per test digit, [(right, total) for digits 0-9])."""
    loss, accuracy, probabilities = evaluate(model, data.test_images, data.test_labels)
    correct = probabilities.argmax(1) == data.test_labels
    per_class = [(int(correct[data.test_labels == digit].sum()), int((data.test_labels == digit).sum()))
                 for digit in range(10)]
    return loss, accuracy, correct, per_class


def evaluate_test_set(model, state, args, path) -> bool:
    """Print overall and per-class accuracy (and append them to --summary); True when the figures agree with the
    recorded one (and reach --min-accuracy when it is given)."""
    from utils.data import load_mnist  # here: torchvision's import (0.7 s) is of no use to --image and --list

    data = load_mnist(args.data_dir)
    started = time.perf_counter()
    loss, accuracy, correct, per_class = test_set_figures(model, data)
    print(f"test set: {accuracy:.2f}% ({int(correct.sum()):,} of {len(correct):,} correct), "
          f"loss {loss:.4f}, {time.perf_counter() - started:.1f} s")
    print("per class:")
    for digit, (right, total) in enumerate(per_class):
        print(f"  {digit}: {right / total * 100:6.2f}% ({right:,} of {total:,})")

    recorded = float(state["final_test_accuracy"])
    difference = round((accuracy - recorded) / 100 * len(correct))  # in test digits
    if difference == 0:
        print(f"recorded in the checkpoint: {recorded:.2f}%: matches")
    else:
        print(f"recorded in the checkpoint: {recorded:.2f}%: DIFFERS by {abs(difference)} test digit(s) "
              f"({'more' if difference > 0 else 'fewer'} correct here)")
    ok = abs(accuracy - recorded) <= TOLERANCE
    if not ok:
        print(f"the difference is larger than {TOLERANCE} points: other weights or other test data", file=sys.stderr)
    if args.min_accuracy is not None:
        reached = accuracy >= args.min_accuracy
        print(f"minimum {args.min_accuracy:.2f}%: {'passed' if reached else 'FAILED'}")
        ok = ok and reached
    if args.summary:
        with reporting("write", args.summary), open(args.summary, "a", encoding="utf-8") as file:
            file.write(markdown(path, state, accuracy, per_class, args.min_accuracy, args.artifact))
    return ok


def verdict(ok: bool) -> str:
    return "passed" if ok else "**FAILED**"


def markdown(path, state, accuracy, per_class, min_accuracy, artifacts, budget=BUDGET) -> str:
    """The CI run's result at a glance, for GitHub's job summary: the test accuracy against the bar and per class,
    the parameter count against the budget, the epoch's time, the artifacts and how to check a downloaded one."""
    seconds = state["history"][-1]["train_seconds"]
    timing = f"{seconds:.1f} s ({60000 / seconds:,.0f} images/s)" if seconds > 0 else "not recorded"
    lines = [
        f"## MNIST: {accuracy:.2f}% test accuracy after {state['epochs']} epoch(s)",
        "",
        "| check | result | bar | |",
        "|---|---|---|---|",
        f"| test accuracy (10,000 digits, evaluated again from the checkpoint) | {accuracy:.2f}% | at least "
        f"{min_accuracy:g}% | {verdict(accuracy >= min_accuracy)} |",
        f"| parameters | {state['parameters']:,} | under {budget:,} | {verdict(state['parameters'] < budget)} |",
        f"| last epoch's training loop | {timing} | | |",
        "",
        f"Checkpoint `{shown(Path(path).name)}`: seed {state['seed']}, trained on "
        f"{shown(state['device_used'], 40)} with torch {shown(state['torch_version'], 40)}.",
        "",
        "| digit | " + " | ".join(str(digit) for digit in range(10)) + " |",
        "|---|" + "---|" * 10,
        "| accuracy | " + " | ".join(f"{right / total * 100:.1f}%" for right, total in per_class) + " |",
    ]
    if artifacts:
        lines += ["", "Artifacts of this run: " + ", ".join(f"`{shown(name, 100)}`" for name in artifacts) + ".",
                  f"To check the model on your machine, download `{shown(artifacts[0], 100)}` from this page and run "
                  f"`python evaluate.py {shown(artifacts[0], 100)}.zip`: it evaluates it on the test set and says "
                  "whether the figure matches the one recorded."]
    return "\n".join(lines) + "\n"


@torch.no_grad()
def probabilities_of(model, digit, name) -> torch.Tensor:
    """The ten class probabilities (on the CPU) of one (1, 28, 28) uint8 digit, as load_digit makes it."""
    probabilities = log_probabilities(model, normalize(digit[None]))[0].exp().cpu()
    if not torch.isfinite(probabilities).all():  # weights that pass every check can still overflow on a digit
        raise UserError(f"{name}: the network's output for it is NaN or infinite (its weights overflow)")
    return probabilities


def predict_images(model, files) -> bool:
    """Print the predicted digit and its probability for each file; a bad file gets one error line."""
    all_read = True
    for file in files:
        try:
            probabilities = probabilities_of(model, load_digit(file), file)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            all_read = False
            continue
        best = int(probabilities.argmax())
        runner_up = int(probabilities.topk(2).indices[1])
        print(f"{shown(file)}: {best} ({probabilities[best].item() * 100:.1f}%; next: {runner_up} "
              f"{probabilities[runner_up].item() * 100:.1f}%)")
    return all_read


def listing(path) -> bool:
    """Print a table of the checkpoints in `path`, newest first, a damaged one with its reason; True if all read."""
    rows, all_read = [("name", "date", "network", "parameters", "optimizer and recipe", "epochs", "accuracy")], True
    for name, date, file in every_checkpoint(path):
        try:
            if isinstance(file, UserError):
                raise file
            rows.append(row(shown(name, 60), date, load_checkpoint(file, name)))
        except UserError as error:
            rows.append((shown(name, 60), date, f"damaged: {str(error).split(': ', 1)[-1]}"))
            all_read = False
    widths = [max(len(line[column]) for line in rows if len(line) == len(rows[0]) or column < 2)  # a damaged
              for column in range(len(rows[0]))]  # row's third cell, its reason, runs on past the columns
    print(f"{len(rows) - 1} checkpoint(s) in {shown(path)}, newest first (evaluate.py and draw.py take the first):")
    for line in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return all_read


def row(name, date, state) -> tuple:
    """A checkpoint's line in the table: its network by the widths of its conv layers (else its first layers)."""
    widths = [shape[0] for shape in state["layers"].values() if len(shape) == 4]
    recipe = state["hyperparameters"]
    return (name, date,
            ",".join(map(str, widths)) or shown(", ".join(list(state["layers"])[:2]), 40),
            f"{state['parameters']:,}", f"{shown(state['optimizer'], 20)}, batch {recipe['batch_size']}, "
            f"lr {recipe['lr']:g}, smoothing {recipe['label_smoothing']:g}, "
            f"augment {'on' if recipe['augment'] else 'off'}",
            f"{state['epochs']}/{state['planned_epochs']}", f"{state['final_test_accuracy']:.2f}%")


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        return 0 if listing(args.checkpoint) else 1
    with checkpoint_file(args.checkpoint) as (file, path):
        model, state = load_model(file, device=args.device, name=path)
    print(f"checkpoint: {shown(path)} ({shown(state['architecture'], 40)}, {state['parameters']:,} parameters, "
          f"{state['epochs']} epoch(s), seed {state['seed']}, trained on {shown(state['device_used'], 40)}, "
          f"torch {shown(state['torch_version'], 40)}); evaluating on {describe(model)}")
    ok = predict_images(model, args.image) if args.image else evaluate_test_set(model, state, args, path)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
