"""One exception type for every mistake a user can fix, and the one place that prints it."""
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
