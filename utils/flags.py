"""The types of the programs' flags: each refuses a bad value with a one-line reason (OneLineErrors prints it)."""
import argparse
import math

MAX_BATCH = 8192  # images per step, at most: larger batches take gigabytes of memory and learn little in an epoch
MAX_EPOCHS = 200  # a checkpoint's history of them stays within what a reader takes (utils/checkpoint.py MAX_PICKLE)
MAX_LR = 10.0  # far above any that trains; 1e40 overflows float32 at the first step
MAX_BLOCKS, MAX_WIDTH = 5, 256  # conv blocks: widths 256,256 evaluate in 40 s and 1.3 GB (docs/performance.md)
SEEDS = 2**64  # torch's generators take seeds from 0 to 2**64 - 1


def whole_number(text) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def number(text) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_int(text):
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text):
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text):
    value = number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def epochs(text, least=1):
    value = positive_int(text) if least else non_negative_int(text)
    if value > MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_EPOCHS:,}, not {value:,}")
    return value


def learning_rate(text):
    value = positive_float(text)
    if value > MAX_LR:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LR:g} (higher rates diverge), not {text}")
    return value


def seed(text):
    value = whole_number(text)
    if not 0 <= value < SEEDS:
        raise argparse.ArgumentTypeError(f"must be from 0 to {SEEDS - 1}, not {value}")
    return value


def percentage(text):
    value = number(text)
    if not 0 <= value <= 100:  # nan and inf fail too
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100, not {text}")
    return value


def fraction(text):
    """From 0 to 1: label smoothing, weight decay."""
    value = number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text}")
    return value


def below_one(text):
    """From 0, and below 1: dropout."""
    value = number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 and below 1, not {text}")
    return value


def batch_size(text):
    value = positive_int(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH:,} (larger batches take gigabytes of memory "
                                         f"and learn little), not {value:,}")
    return value
