"""Changes a user makes to train.py, made in a copy of the repo as a user would make them, and run as they would
be run: each trains, saves, resumes and evaluates, or stops with one line."""
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, fresh_copy, run_shell

SECTION = (REPO / "README.md").read_text().split("\n## Change it\n")[1].split("\n## ")[0]
COMMANDS = re.search(r"```bash\n(.*?)```", SECTION, re.DOTALL)[1].splitlines()  # each run as written, comment too
(ADAM,) = [line.strip() for line in re.search(r"```python\n(.*?)```", SECTION, re.DOTALL)[1].splitlines()]


@pytest.mark.slow
def test_the_readme_s_other_widths_and_one_more_block_work_as_written(tmp_path, real_raw_dir):
    fresh_copy(tmp_path, real_raw_dir)
    assert len(COMMANDS) == 3
    for command in COMMANDS:
        result = run_shell(command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        if command.startswith("python train.py"):
            widths = [int(width) for width in command.split("--channels ")[1].split()[0].split(",")]
            newest = max(checkpoints(tmp_path), key=lambda path: path.stat().st_mtime)
            assert torch.load(newest, weights_only=True)["network"]["channels"] == widths
            assert f"widths {','.join(map(str, widths))}, " in result.stdout and "(under the budget" in result.stdout
        else:
            assert result.stdout.splitlines()[-1].endswith(": ok")


def with_adam(folder, raw_dir):
    """A copy of the repo whose train.py builds Adam: its one line that begins `optimizer = ` replaced."""
    fresh_copy(folder, raw_dir)
    source = (folder / "train.py").read_text()
    (line,) = [line for line in source.splitlines() if line.lstrip().startswith("optimizer = ")]
    (folder / "train.py").write_text(source.replace(line, line[:len(line) - len(line.lstrip())] + ADAM))
    return folder


def run(folder, *args):
    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=600)


def checkpoints(folder):
    return [path for path in (folder / "models").glob("*.pth") if not path.name.startswith(".")]


@pytest.mark.slow
def test_torch_optim_adam_in_place_of_sgd_trains_saves_resumes_and_evaluates(tmp_path, real_raw_dir, one_epoch_run):
    repo = with_adam(tmp_path, real_raw_dir)
    # interrupted: Ctrl-C once epoch 1's checkpoint is written, while epoch 2 trains
    process = subprocess.Popen([sys.executable, "train.py", "--epochs", "2", "--batch-size", "500", "--lr", "0.005"],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not checkpoints(repo) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    (path,) = checkpoints(repo)
    state = torch.load(path, weights_only=True)
    assert state["optimizer"] == "Adam" and (state["epochs"], state["planned_epochs"]) == (1, 2)
    assert "exp_avg" in state["optimizer_state_dict"]["state"][0]  # Adam's own state, as Adam wrote it

    carried = run(repo, "train.py", "--epochs", "2", "--resume", "models", "--quiet")
    assert carried.returncode == 0, carried.stderr
    assert "resumed" in carried.stdout and "batch 500, peak lr 0.005" in carried.stdout
    assert "Adam (weight decay 0, momentum 0.95-0.85)" in carried.stdout  # what Adam used: no decay, beta1 cycled
    assert torch.load(max(checkpoints(repo), key=lambda path: path.stat().st_mtime),
                      weights_only=True)["hyperparameters"]["weight_decay"] == 0
    extended = run(repo, "train.py", "--epochs", "3", "--resume", "models", "--lr", "0.002", "--quiet")
    assert extended.returncode == 0, extended.stderr
    evaluated = run(repo, "evaluate.py", "models")
    assert evaluated.returncode == 0 and ": matches" in evaluated.stdout, evaluated.stdout + evaluated.stderr
    state = max((torch.load(path, weights_only=True) for path in checkpoints(repo)), key=lambda state: state["epochs"])
    assert state["epochs"] == 3 and state["optimizer"] == "Adam" and state["final_test_accuracy"] > 97

    other = run(repo, "train.py", "--epochs", "2", "--resume", str(one_epoch_run[1]))  # SGD's state: not Adam's
    assert other.returncode == 1 and other.stderr == (f"error: {one_epoch_run[1]} was trained with SGD, and train.py "
                                                      "now builds Adam: its optimizer state cannot carry over\n")
