"""The process behind conftest's small_disk fixture: it runs in a mount namespace of its own (`unshare -rm`), where
it may mount a small or read-only tmpfs, and runs this repo's scripts there one after another, importing torch
once for all of them. Each line on stdin is a request, JSON [tmpfs options, folder, script arguments]: it mounts
the tmpfs at the folder, runs the script's main as conftest.run_in_process does, lists the files left on the
disk, unmounts it and answers one line of JSON: {"returncode", "stdout", "stderr", "left"} or {"error"}."""
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, as pytest's pythonpath has it

from conftest import run_in_process  # noqa: E402


def run_on(options, disk, args) -> dict:
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", disk], capture_output=True, text=True)
    if mounted.returncode != 0:
        return {"error": f"cannot mount a tmpfs at {disk}: {mounted.stderr.strip()}"}
    try:
        try:
            result = run_in_process(*args)
            answer = {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
        except Exception:  # what a real process would print before exiting 1
            answer = {"returncode": 1, "stdout": "", "stderr": traceback.format_exc()}
        answer["left"] = sorted(name for _, _, files in os.walk(disk) for name in files)
        return answer
    finally:
        subprocess.run(["umount", disk], check=True)


def main():
    answers = os.fdopen(os.dup(1), "w")  # the answers' own channel: what torch's C code may print goes to stderr
    os.dup2(2, 1)
    for line in sys.stdin:
        answers.write(json.dumps(run_on(*json.loads(line))) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
