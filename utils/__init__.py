"""What the scripts share: data, checkpoints, files, errors, the optimizer and its schedule, pictures.

Importing the package arms the one Ctrl-C guard (utils.errors.guard_ctrl_c): Ctrl-C while torch loads is one
line and exit 130, for a program of this repository. Every script imports utils before torch."""
from utils.errors import guard_ctrl_c

guard_ctrl_c()
