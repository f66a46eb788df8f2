"""Changes a user makes, as the README's "Change it" shows them, each made in a fresh copy of the repo and run as a
user runs it: train.py, --resume, evaluate.py and draw.py's /predict with what it trained, or one line that says
why not. Batches of 500 make the epochs quick: these check the mechanics, not the accuracy."""
import inspect
import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
import torch

from conftest import REPO, fresh_copy, run_shell
from test_placement import OwnNetwork

SECTION = (REPO / "README.md").read_text().split("\n## Change it\n")[1].split("\n## ")[0]
COMMANDS = re.search(r"```bash\n(.*?)```", SECTION, re.DOTALL)[1].splitlines()  # each run as written, comment too
OWN_SEQUENCE, ONE_MORE_BLOCK, OTHER_OPTIMIZER = [block.strip() for block in
                                                 re.findall(r"```python\n(.*?)```", SECTION, re.DOTALL)]
DIGIT = REPO / "tests" / "fixtures" / "digit_0.png"  # a test digit 7, drawn dark on light
OWN_MODULE = "\n\n" + inspect.getsource(OwnNetwork)  # a forward of its own, not a sequence


def edited(folder, raw_dir, path="model/network.py", old=None, new=None, append=""):
    """A fresh copy of the repo with `old` (which must occur once) replaced by `new` in `path`."""
    fresh_copy(folder, raw_dir)
    source = (folder / path).read_text()
    if old is not None:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    (folder / path).write_text(source + append)
    return folder


def run(folder, *args):
    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=600)


def checkpoints(folder):
    return sorted((path for path in (folder / "models").glob("*.pth") if not path.name.startswith(".")),
                  key=lambda path: path.stat().st_mtime)


def predicted_by_the_page(folder) -> dict:
    """draw.py serving the newest checkpoint: what POST /predict answers for DIGIT."""
    process = subprocess.Popen([sys.executable, "draw.py", "--port", "0"], cwd=folder, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = [process.stdout.readline() for _ in range(3)]  # the checkpoint it takes and why, it, the address
        url = re.search(r"at (http://127\.0\.0\.1:\d+/) ", lines[2])
        assert url, (lines, process.stderr.read() if process.poll() is not None else "")
        with urllib.request.urlopen(url[1] + "predict", DIGIT.read_bytes(), timeout=60) as answer:
            return json.loads(answer.read())
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


def trains_resumes_evaluates_and_draws(repo, *options):
    """One epoch, a second one by --resume, evaluate.py on both the test set and DIGIT, draw.py's reading of DIGIT:
    each must work. Returns the first run's output and the final checkpoint."""
    first = run(repo, "train.py", "--epochs", "1", "--batch-size", "500", "--quiet", *options)
    assert first.returncode == 0, first.stderr
    resumed = run(repo, "train.py", "--resume", "models", "--epochs", "2", "--quiet")
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
    evaluated = run(repo, "evaluate.py", "models")
    assert evaluated.returncode == 0 and ": matches" in evaluated.stdout, evaluated.stdout + evaluated.stderr
    read = run(repo, "evaluate.py", "models", "--image", str(DIGIT))
    assert read.returncode == 0, read.stderr
    digit = int(re.search(r"digit_0\.png: (\d) \(", read.stdout)[1])
    page = predicted_by_the_page(repo)
    assert page["digit"] == digit and sum(page["probabilities"]) == pytest.approx(1, abs=1e-4)
    state = torch.load(checkpoints(repo)[-1], weights_only=True)
    assert state["epochs"] == 2 and state["final_test_accuracy"] > 80, state["final_test_accuracy"]
    return first.stdout, state


def test_the_defaults_edited_where_they_are_defined_are_the_ones_a_run_takes(tmp_path, real_raw_dir):
    """The design's widths and dropout (model/network.py) and the hybrid split (model/placement.py), edited: train.py's
    help names the new defaults, the dropout through the recipe a run takes. Before, it named 10,20,28 and 2 still,
    and the recipe kept a dropout of 0.15 of its own."""
    repo = edited(tmp_path, real_raw_dir, old="CHANNELS, DROPOUT = (10, 20, 28), 0.15",
                  new="CHANNELS, DROPOUT = (12, 24, 32), 0.3")
    placement = repo / "model" / "placement.py"
    placement.write_text(placement.read_text().replace("DEFAULT_SPLIT = 2 ", "DEFAULT_SPLIT = 3 "))
    result = run(repo, "train.py", "--help")
    shown = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stderr
    assert all(text in shown for text in ("dropped in training (default: 0.3)", "widths (default: 12,24,32)",
                                          "layers (default: 3,")), shown


@pytest.mark.slow
def test_a_a_block_of_a_new_width_appended_in_build_model(tmp_path, real_raw_dir):
    repo = edited(tmp_path, real_raw_dir, old="    blocks = conv_blocks(channels)\n",
                  new=f"    blocks = conv_blocks(channels)\n    {ONE_MORE_BLOCK}\n")
    said, state = trains_resumes_evaluates_and_draws(repo)
    assert "conv widths 10,20,28,32, " in said  # the log and the checkpoint say what the network holds
    assert state["layers"]["3.conv.weight"] == [32, 28, 3, 3] and state["layers"]["4.2.weight"][0] == 10
    # the edit undone: the code at hand builds another network, and says which layer differs
    (repo / "model" / "network.py").write_text((REPO / "model" / "network.py").read_text())
    refused = run(repo, "evaluate.py", "models")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "layer 3.conv.weight is absent here, 32x28x3x3 in the checkpoint" in refused.stderr


@pytest.mark.slow
def test_b_build_model_returning_one_s_own_sequential(tmp_path, real_raw_dir):
    repo = edited(tmp_path, real_raw_dir, old="    blocks = conv_blocks(channels)\n    return HybridCNN(dropout=dropout, "
                  "blocks=blocks)\n", new=f"    {OWN_SEQUENCE}\n")
    said, state = trains_resumes_evaluates_and_draws(repo)
    assert "model: Sequential, 79,510 parameters" in said and state["architecture"] == "Sequential"


@pytest.mark.slow
def test_c_one_s_own_module_with_a_forward_of_its_own_runs_on_one_device(tmp_path, real_raw_dir):
    repo = edited(tmp_path, real_raw_dir, old="    blocks = conv_blocks(channels)\n    return HybridCNN(dropout=dropout, "
                  "blocks=blocks)\n", new="    return OwnNetwork()\n", append=OWN_MODULE)
    said, _ = trains_resumes_evaluates_and_draws(repo)
    assert "model: OwnNetwork, conv widths 4, 1,554 parameters" in said and "placement OwnNetwork -> " in said
    hybrid = run(repo, "train.py", "--placement", "hybrid")
    assert hybrid.returncode == 1 and hybrid.stderr == (
        "error: hybrid placement splits an nn.Sequential between devices, and this model is a OwnNetwork: use "
        "--placement single or auto\n")


@pytest.mark.slow
def test_d_adam_by_its_flag_and_another_optimizer_by_its_one_line(tmp_path, real_raw_dir):
    said, state = trains_resumes_evaluates_and_draws(edited(tmp_path / "adam", real_raw_dir), "--optimizer", "adam")
    assert "Adam (weight decay 0.00025, momentum 0.9-0.8), batch 500, peak lr 0.005" in said
    assert state["optimizer"] == "Adam" and "exp_avg" in state["optimizer_state_dict"]["state"][0]

    source = (REPO / "train.py").read_text()
    (line,) = [line for line in source.splitlines() if line.lstrip().startswith("optimizer = ")]
    repo = edited(tmp_path / "rmsprop", real_raw_dir, "train.py", line, line[:len(line) - len(line.lstrip())]
                  + OTHER_OPTIMIZER)
    said, state = trains_resumes_evaluates_and_draws(repo, "--lr", "0.002")
    assert "RMSprop (weight decay 0.00025, momentum 0.9-0.8), batch 500, peak lr 0.002" in said
    assert state["optimizer"] == "RMSprop" and "square_avg" in state["optimizer_state_dict"]["state"][0]


@pytest.mark.slow
def test_the_readme_s_other_widths_and_one_more_block_work_as_written(tmp_path, real_raw_dir):
    fresh_copy(tmp_path, real_raw_dir)
    assert len(COMMANDS) == 3
    for command in COMMANDS:
        result = run_shell(command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        if command.startswith("python train.py"):
            widths = [int(width) for width in command.split("--channels ")[1].split()[0].split(",")]
            state = torch.load(checkpoints(tmp_path)[-1], weights_only=True)
            assert state["build_model"]["channels"] == widths
            assert f"conv widths {','.join(map(str, widths))}, " in result.stdout and "(under the budget" in result.stdout
        else:
            assert result.stdout.splitlines()[-1].endswith(": ok")
