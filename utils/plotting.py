"""The pipeline's pictures, as PNG files through matplotlib. Each function draws one figure, saves it
under a timestamped name that never overwrites anything (or, with fixed=True, as <kind>.png, replacing
the last one: the README's pictures), and returns the path.

    python -m utils.plotting models/model_cpu_20261206_083436.csv   # a run's training curves, from its CSV
"""
import csv
import io
import math
from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure  # not pyplot: no window, no backend to choose, works without a display

from utils.errors import OneLineErrors, UserError, run_cli, shown
from utils.files import replace_atomically, reporting, timestamp, write_new


def save(figure, folder, stem, fixed=False):
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, dpi=100, format="png")
    if fixed:
        path = Path(folder) / f"{stem}.png"
        replace_atomically(path, buffer.getvalue())
        return path
    return write_new(folder, f"{stem}_{timestamp()}", ".png", buffer.getvalue())


def augmentation_grid(originals, augmented, labels, folder, fixed=False):
    """A row per sample: the original digit, then its augmentations. augmented: (samples, per_sample, 1, 28, 28).
    Drawn as one image (one axes, not one per digit): a 64 x 65 grid takes a second, not two minutes."""
    rows, per_sample = augmented.shape[:2]
    columns, side, gap = per_sample + 1, originals.shape[-1], 2
    pictures = torch.cat([originals[:, None], augmented], 1).squeeze(2).cpu()  # (rows, columns, side, side)
    sheet = torch.full((rows, side + gap, columns, side + gap), float("nan"))
    sheet[:, :side, :, :side] = pictures.permute(0, 2, 1, 3)
    sheet = sheet.reshape(rows * (side + gap), columns * (side + gap))[:-gap, :-gap]
    inches = min(1.4, 24 / columns)  # a column's width: wide grids shrink to stay a readable picture
    figure = Figure(figsize=(inches * columns, inches * 1.5 / 1.4 * rows + 0.4))
    axis = figure.subplots()
    colours = matplotlib.colormaps["gray"].with_extremes(bad="white")  # the gaps
    axis.imshow(sheet.numpy(), cmap=colours, vmin=0, vmax=1, interpolation="nearest")
    centres = [index * (side + gap) + side / 2 - 0.5 for index in range(max(rows, columns))]
    axis.xaxis.tick_top()
    names = [f"augmented {k}" if columns <= 9 else str(k) for k in range(1, columns)]
    axis.set_xticks(centres[:columns], ["original"] + names, fontsize=9)
    axis.set_yticks(centres[:rows], [f"label {int(label)}" for label in labels], fontsize=10)
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    figure.suptitle("What runs of several epochs train on: the original and random augmentations\n"
                    "(a one-epoch run sees its digits as they are, each batch shifted by up to one pixel)", fontsize=11)
    return save(figure, folder, "augmentation", fixed)


def training_curves(history, train_size, folder, fixed=False):
    """Cross-entropy and accuracy: training over steps (25-step averages) and per epoch, test per epoch. Both
    losses in one measure, the cross-entropy of the predicted probabilities, whatever loss training optimized
    (label-smoothed in a one-epoch run); a run recorded before its cross-entropy was shows the loss optimized."""
    figure = Figure(figsize=(11, 4))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    plain = all(len(point) == 4 for entry in history for point in entry["curve"]) and all(
        "train_cross_entropy" in entry for entry in history)
    for entry in filter(lambda entry: entry["curve"], history):  # a run's CSV has no curve within its epochs
        start = entry["epoch"] - 1
        x = [start + point[0] / train_size for point in entry["curve"]]
        for axis, column in ((loss_axis, 3 if plain else 1), (accuracy_axis, 2)):  # (seen, loss, accuracy, c-e)
            axis.plot(x, [point[column] for point in entry["curve"]], color="tab:blue", alpha=0.5, lw=1,
                      label="train, 25-step average" if entry is history[0] else None)
    epochs = [entry["epoch"] for entry in history]
    train_keys = {"loss": "train_cross_entropy" if plain else "train_loss", "accuracy": "train_accuracy"}
    names = {"loss": "cross-entropy" if plain else "loss (train: as optimized)", "accuracy": "accuracy (%)"}
    for axis, key in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(epochs, [entry.get(train_keys[key], entry[f"train_{key}"]) for entry in history], "o-",
                  color="tab:blue", label="train, epoch mean")
        axis.plot(epochs, [entry[f"test_{key}"] for entry in history], "s-", color="tab:red",
                  label="test, end of epoch")
        axis.set_xlabel("epoch")
        axis.set_ylabel(names[key])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    loss_axis.set_yscale("log")
    lowest = min([point[2] for entry in history for point in entry["curve"][1:]] + [90] +
                 [entry[f"{part}_accuracy"] for entry in history for part in ("train", "test")])
    accuracy_axis.set_ylim(max(0, lowest - 1), 100.2)
    last = history[-1]
    figure.suptitle(f"Training curves: {last['test_accuracy']:.2f}% test accuracy after {last['epoch']} epoch(s)")
    return save(figure, folder, "training_curves", fixed)


def history_from_csv(path) -> list[dict]:
    """A run's metrics file (the CSV train.py writes beside its checkpoint) as the history training_curves draws:
    each epoch's figures, without the curve within each epoch that the checkpoint holds too."""
    with reporting("read", path), open(path, newline="", encoding="utf-8", errors="replace") as file:
        rows = list(csv.DictReader(file))
    try:
        history = [{"epoch": int(row["epoch"]), "curve": [], **{key: float(row[key]) for key in (
            "train_loss", "train_accuracy", "test_loss", "test_accuracy")}} for row in rows]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a run's metrics file (the CSV train.py writes beside its checkpoint)") from None
    if not history or not all(math.isfinite(entry[key]) for entry in history for key in entry if key != "curve"):
        raise UserError(f"{path}: no epochs with finite figures in it")
    return history


def confusion_counts(predictions, labels):
    """counts[true digit, predicted digit] over a set: a row per true digit."""
    matrix = torch.zeros(10, 10, dtype=torch.long)
    return matrix.index_put_((labels, predictions), torch.ones_like(labels), accumulate=True)


def confusion_matrix(predictions, labels, folder, fixed=False):
    matrix = confusion_counts(predictions, labels)
    figure = Figure(figsize=(7, 6))
    axis = figure.subplots()
    image = axis.imshow(matrix.float().log1p(), cmap="Blues")
    for true in range(10):
        for predicted in range(10):
            count = int(matrix[true, predicted])
            if count:
                axis.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                          color="white" if true == predicted else "black")
    axis.set_xticks(range(10))
    axis.set_yticks(range(10))
    axis.set_xlabel("predicted digit")
    axis.set_ylabel("true digit")
    errors = int(matrix.sum() - matrix.trace())
    axis.set_title(f"Confusion matrix on the {int(matrix.sum()):,} test digits ({errors} wrong)")
    figure.colorbar(image, ax=axis, label="log(1 + count)")
    return save(figure, folder, "confusion_matrix", fixed)


def surest_mistakes(probabilities, labels, count):
    """The indices of the `count` wrong predictions made with the highest probability, surest first."""
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != labels).nonzero().squeeze(1)
    return wrong[confidence[wrong].argsort(descending=True)][:count]


def confident_mistakes(images, labels, probabilities, folder, count=24, fixed=False):
    """The wrong predictions the model was surest of, with predicted and true labels."""
    order = surest_mistakes(probabilities, labels, count)
    confidence, predicted = probabilities.max(1)  # for the titles
    columns = 8
    rows = max(1, -(-len(order) // columns))
    figure = Figure(figsize=(1.6 * columns, 1.9 * rows + 0.5))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, order.tolist()):
        axis.imshow(images[index].squeeze(0), cmap="gray")
        axis.set_title(f"pred {int(predicted[index])} ({confidence[index]:.0%})\ntrue {int(labels[index])}",
                       fontsize=8, color="tab:red")
    mistakes = int((predicted != labels).sum())
    figure.suptitle(f"The {len(order)} most confident mistakes of {mistakes} on the test set", fontsize=11)
    return save(figure, folder, "confident_mistakes", fixed)


def main(argv=None):
    parser = OneLineErrors(description="Draw a run's training curves from its metrics file (train.py's CSV).")
    parser.add_argument("csv", metavar="RUN.csv", help="the CSV file beside the run's checkpoint")
    parser.add_argument("--samples-dir", default="samples", help="where the picture goes (default: %(default)s)")
    args = parser.parse_args(argv)
    print(f"training curves: {shown(training_curves(history_from_csv(args.csv), 1, args.samples_dir))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
