"""The CI run's result at a glance, as Markdown for GitHub's job summary ($GITHUB_STEP_SUMMARY): test
accuracy against the bar and per class (evaluated again from the saved checkpoint), the parameter count
against the budget, the epoch's time, the artifacts and how to check a downloaded one.

    python -m utils.job_summary models --min-accuracy 95 --budget 25000 \\
        --artifact mnist-model-12 --artifact mnist-samples-12 >> "$GITHUB_STEP_SUMMARY"
"""
import sys
from pathlib import Path

from utils.errors import exit_at_once_on_ctrl_c  # first: Ctrl-C while torch loads is one line too

exit_at_once_on_ctrl_c(__name__)

import evaluate
from utils.checkpoint import checkpoint_file, load_model
from utils.data import load_mnist
from utils.errors import OneLineErrors, UserError, percentage, positive_int, run_cli, shown


def verdict(ok: bool) -> str:
    return "passed" if ok else "**FAILED**"


def markdown(path, state, accuracy, per_class, min_accuracy, budget, artifacts) -> str:
    seconds = state["history"][-1]["train_seconds"]
    lines = [
        f"## MNIST: {accuracy:.2f}% test accuracy after {state['epochs']} epoch(s)",
        "",
        "| check | result | bar | |",
        "|---|---|---|---|",
        f"| test accuracy (10,000 digits, evaluated again from the checkpoint) | {accuracy:.2f}% | at least "
        f"{min_accuracy:g}% | {verdict(accuracy >= min_accuracy)} |",
        f"| parameters | {state['parameters']:,} | under {budget:,} | {verdict(state['parameters'] < budget)} |",
        f"| last epoch's training loop | {seconds:.1f} s ({60000 / seconds:,.0f} images/s) | | |",
        "",
        f"Checkpoint `{shown(Path(path).name)}`: seed {state['seed']}, trained on "
        f"{shown(state.get('device_used', '?'), 40)} with torch {shown(state.get('torch_version', '?'), 40)}.",
        "",
        "| digit | " + " | ".join(str(digit) for digit in range(10)) + " |",
        "|---|" + "---|" * 10,
        "| accuracy | " + " | ".join(f"{right / total * 100:.1f}%" for right, total in per_class) + " |",
    ]
    if artifacts:
        lines += ["", "Artifacts of this run: " + ", ".join(f"`{name}`" for name in artifacts) + ".",
                  f"To check the model on your machine, download `{artifacts[0]}` from this page and run "
                  f"`python evaluate.py {artifacts[0]}.zip`: it evaluates it on the test set and says whether the "
                  "figure matches the one recorded."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = OneLineErrors(prog="python -m utils.job_summary", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", metavar="PATH", help="a checkpoint, or a folder: its newest checkpoint")
    parser.add_argument("--min-accuracy", type=percentage, required=True, help="the bar for the test accuracy (%%)")
    parser.add_argument("--budget", type=positive_int, required=True, help="the parameter count must stay under this")
    parser.add_argument("--artifact", action="append", default=[],
                        help="the name of an artifact the run uploads (the model's first)")
    parser.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DATA_DIR or data/)")
    args = parser.parse_args(argv)
    with checkpoint_file(args.checkpoint, log=lambda message: print(message, file=sys.stderr)) as (file, path):
        model, state = load_model(file, name=path)
    history = state.get("history")
    if not (isinstance(history, list) and history and isinstance(history[-1], dict)
            and isinstance(history[-1].get("train_seconds"), float) and history[-1]["train_seconds"] > 0):
        raise UserError(f"{path}: damaged checkpoint: no training history with the epoch's time")
    _, accuracy, _, per_class = evaluate.test_set_figures(model, load_mnist(args.data_dir, log=lambda message: None))
    print(markdown(path, state, accuracy, per_class, args.min_accuracy, args.budget, args.artifact), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
