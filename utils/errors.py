"""One exception type for every mistake a user can fix, the one place that prints it, the one rule for text
on the screen, and argument parsing that reports bad flags in one line too (their types: utils/flags.py)."""
import argparse
import gc
import os
import signal
import sys
from pathlib import Path

INTERRUPTED = "interrupted: stopped before finishing; no partial files were left"


def shown(value, limit: int | None = 300) -> str:
    """`value` as text that is safe to print on one line: control characters (a line break, a terminal's escape
    codes) written as Python writes them (\\n, \\x1b), bytes of a name that were not UTF-8 as \\xff, and over
    `limit` characters the middle cut out. For every path and every string read from a file."""
    text = "".join(character if character.isprintable() or character == " " else escaped(character)
                   for character in str(value))
    if limit is not None and len(text) > limit:
        text = f"{text[:limit // 2 - 2]}...{text[-(limit - limit // 2 - 1):]}"
    return text


def escaped(character: str) -> str:
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as Python decodes a name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return repr(character)[1:-1]


class UserError(Exception):
    """Bad input or missing/corrupt files: shown as one line, never as a traceback (whatever the names and
    strings it quotes hold)."""

    def __init__(self, message):
        super().__init__(shown(message, limit=None))


SCRIPTS = ("train.py", "evaluate.py", "draw.py", "run_pipeline.py")  # this repository's: each ends through run_cli


def is_script() -> bool:
    """Whether this process runs one of SCRIPTS or a module of this repository run with -m (while Python locates
    one, sys.argv[0] is "-m"): not a test, a notebook, a benchmark or a script of the user's own that imports the
    code, whose Ctrl-C and collector stay Python's (none of them ends through run_cli)."""
    name = sys.argv[0] if sys.argv else ""
    repository = Path(__file__).resolve().parent.parent
    return name == "-m" or name not in ("", "-c") and Path(name).resolve() in [repository / one for one in SCRIPTS]


SCRIPT = is_script()  # now, as utils loads: under -m, sys.argv[0] becomes the module's file later


def guard_ctrl_c() -> None:
    """Until run_cli starts, Ctrl-C exits at once with the one line. Python would raise KeyboardInterrupt, and
    raised inside torch's import (1.5-2 s of every start) it aborts the process from C++ ("terminate called after
    throwing an instance of 'pybind11::error_already_set'", SIGABRT); nothing is written before main runs, so
    there is nothing to clean up. Armed once, for a script (is_script: one that reaches run_cli) by importing utils,
    which it does before torch; never where Ctrl-C is ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_now)


def _exit_now(signum, frame):
    os.write(2, f"{INTERRUPTED}\n".encode())
    os._exit(130)


def run_cli(main, argv=None):
    """Run a script's main(argv); turn UserError and Ctrl-C into a one-line message and an exit code. What the
    terminal's encoding cannot show is escaped (\\u2026), never an error after the work is done. Each line
    goes out when printed, also into a pipe or a CI log (where Python would hold it until the program ends)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # not a replaced stream (a test's capture)
            stream.reconfigure(errors="backslashreplace", line_buffering=True)
    if signal.getsignal(signal.SIGINT) is _exit_now:  # from here on, Ctrl-C unwinds: files get cleaned up
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if SCRIPT:  # what loaded with the collector off (torch: half a million objects) stays to the exit: out of its walks
        gc.freeze()
        gc.enable()
    try:
        return main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as a command killed by SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush has nowhere to fail
        return 128 + signal.SIGPIPE
    finally:
        if SCRIPT:  # Python's exit collects once more, over all that the run loaded too (torch._dynamo): 0.5 s
            gc.freeze()


class OneLineErrors(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on bad flags; we keep exit 2 but print one line."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")

    def given(self, args, names) -> list[str]:
        """The flags among `names` (as args holds them) that the command line set to other than their defaults."""
        return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) != self.get_default(name)]
