"""What the scripts share: data, checkpoints, files, errors, flags, pictures.

Importing the package, which each of this repository's scripts does before torch, sets that script up until
run_cli starts its work: Ctrl-C while torch loads is one line and exit 130 (utils.errors.guard_ctrl_c), and
Python's cycle collector is off, since torch's and torchvision's imports make half a million objects that live as
long as the program and the collector's passes over them while they load cost 0.3 s (docs/performance.md,
"Start-up and exit"). A test, a notebook, a benchmark or a script of the user's own that imports the code keeps
Python's own settings (utils.errors.is_script)."""
import gc

from utils.errors import SCRIPT, guard_ctrl_c

if SCRIPT:
    guard_ctrl_c()
    gc.disable()
