"""The peak memory of a command in a fresh process, as a user runs it. Linux gives a new program, as its
starting ru_maxrss, the peak of the process that started it: a benchmark that holds torch or a large
picture would lend every child its own peak. So each command starts from a small launcher, whose peak
(some 10 MB) is the only one lent."""
import subprocess
import sys
import tempfile

LAUNCHER = """import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kilobytes on Linux
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss * scale))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(command, **popen) -> tuple[subprocess.CompletedProcess, float]:
    """subprocess.run(command, **popen) and the peak resident memory of its process, in MB."""
    with tempfile.NamedTemporaryFile("r") as report:
        result = subprocess.run([sys.executable, "-c", LAUNCHER, report.name, *command], **popen)
        return result, int(report.read() or 0) / 2**20
