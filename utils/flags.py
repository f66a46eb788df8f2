"""The types of the programs' flags: each refuses a bad value with a one-line reason (OneLineErrors prints it)."""
import argparse

MAX_BATCH = 8192  # images per step, at most: larger batches take gigabytes of memory and learn little in an epoch
MAX_EPOCHS = 200  # a checkpoint's history of them stays within what a reader takes (utils/checkpoint.py MAX_PICKLE)
MAX_LR = 10  # far above any that trains; 1e40 overflows float32 at the first step
MAX_BLOCKS, MAX_WIDTH = 5, 256  # conv blocks: widths 256,256 evaluate in 40 s and 1.3 GB (docs/performance.md)
SEEDS = 2**64  # torch's generators take seeds from 0 to 2**64 - 1


def in_range(kind, low, high=None, above=False, below=False, why=""):
    """A flag's type: a number (`kind`: int for a whole one, or float) from `low` to `high` (`above`: over `low`;
    `below`: under `high`), else a one-line reason: what the range is, and `why`."""
    if high is None:
        span = f"{'above' if above else 'at least'} {low}"
    else:
        span = f"{'above' if above else 'from'} {low} {'and below' if below else 'and at most' if above else 'to'} {high}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not ((low < value if above else low <= value) and  # NaN is in no range
                (high is None or (value < high if below else value <= high))):
            raise argparse.ArgumentTypeError(f"must be {span}{why}, not {text}")
        return value
    return parse


positive_int = in_range(int, 1)
epochs = in_range(int, 1, MAX_EPOCHS)
batch_size = in_range(int, 1, MAX_BATCH, why=" (larger batches take gigabytes of memory and learn little)")
learning_rate = in_range(float, 0, MAX_LR, above=True, why=" (higher rates diverge)")
seed = in_range(int, 0, SEEDS - 1)
percentage = in_range(float, 0, 100)
fraction = in_range(float, 0, 1)  # label smoothing, weight decay
below_one = in_range(float, 0, 1, below=True)  # dropout
