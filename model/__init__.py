import sys

from utils.errors import exit_at_once_on_ctrl_c

# `python -m model` imports this package, and torch with it, before model/__main__.py runs: while Python
# locates the module, sys.argv[0] is "-m" (the docs of -m say so). Ctrl-C in those 2 s is one line too.
exit_at_once_on_ctrl_c("__main__" if sys.argv[0] == "-m" else __name__)

from model.network import HybridCNN, count_parameters  # noqa: E402
from model.placement import Machine, Placement, resolve_placement  # noqa: E402

__all__ = ["HybridCNN", "Machine", "Placement", "count_parameters", "resolve_placement"]
