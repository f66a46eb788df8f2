"""One exception type for every mistake a user can fix, the one place that prints it, and argument
parsing that reports bad flags in one line too."""
import argparse
import math
import sys


class UserError(Exception):
    """Bad input or missing/corrupt files: shown as one line, never as a traceback."""


def run_cli(main, argv=None):
    """Run a script's main(argv); turn UserError and Ctrl-C into a one-line message and an exit code."""
    try:
        return main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: stopped before finishing; no partial files were left", file=sys.stderr)
        return 130


class OneLineErrors(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on bad flags; we keep exit 2 but print one line."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


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


SEEDS = 2**64  # torch's generators take seeds from 0 to 2**64 - 1


def seed_value(text):
    value = whole_number(text)
    if not 0 <= value < SEEDS:
        raise argparse.ArgumentTypeError(f"must be from 0 to {SEEDS - 1}, not {value}")
    return value


def percentage(text):
    value = number(text)
    if not 0 <= value <= 100:  # nan and inf fail too
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100, not {text}")
    return value
