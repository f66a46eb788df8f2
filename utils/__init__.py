"""What the scripts share: data, checkpoints, files, errors, flags, pictures.

Importing the package, which every program of this repository does before torch, arms the one Ctrl-C guard
(utils.errors.guard_ctrl_c: Ctrl-C while torch loads is one line and exit 130) and, for one of its scripts, turns
Python's cycle collector off until run_cli starts the work: torch's and torchvision's imports make half a million
objects that live as long as the program, and the collector's passes over them while they load cost 0.3 s
(docs/performance.md, "Start-up and exit"). A test, a notebook or a script of the user's own that imports the code
keeps Python's own settings (utils.errors.program)."""
import gc

from utils.errors import PROGRAM, guard_ctrl_c

if PROGRAM:
    guard_ctrl_c()
if PROGRAM == "script":
    gc.disable()
