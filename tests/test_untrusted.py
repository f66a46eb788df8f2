"""What files carry that nobody vouches for: the tensors inside a checkpoint, the strings it records, and the
names of files and archive members. Whatever they hold, a reader answers in one line (exit 1), or succeeds and
says so (exit 0), on any terminal."""
import math
import os
import re
import subprocess
import sys
import zipfile

import pytest
import torch

import evaluate
import train
from utils.errors import run_cli

from conftest import REPO


def with_weights(change):
    def damage(state):
        weights = dict(state["model_state_dict"])
        change(weights)
        return state | {"model_state_dict": weights}
    return damage


def with_buffers(change, every=False):
    def damage(state):
        optimizer = state["optimizer_state_dict"]
        buffers = {number: {"momentum_buffer": change(entry["momentum_buffer"]) if every or number == 0
                            else entry["momentum_buffer"]} for number, entry in optimizer["state"].items()}
        return state | {"optimizer_state_dict": optimizer | {"state": buffers}}
    return damage


def first_weight(change):
    first = "0.conv.weight"
    return with_weights(lambda weights: weights.update({first: change(weights[first])}))


TENSORS = {  # what each damage does to a checkpoint, and the reason both readers give
    "nan_weight": (first_weight(lambda weight: weight * math.nan),
                   "model_state_dict['0.conv.weight'] is a tensor with NaN or infinite values"),
    "infinite_weight": (first_weight(lambda weight: weight.index_fill(0, torch.tensor([0]), math.inf)),
                        "model_state_dict['0.conv.weight'] is a tensor with NaN or infinite values"),
    "negative_variance": (with_weights(lambda weights: weights.update(
        {"1.bn.running_var": -weights["1.bn.running_var"]})),
        "1.bn.running_var has negative variances"),
    "number_as_key": (with_weights(lambda weights: weights.update({3: weights.pop("0.conv.weight")})),
                      "model_state_dict has no 0.conv.weight"),
    "sparse_weight": (first_weight(lambda weight: weight.to_sparse()),
                      "model_state_dict['0.conv.weight'] is a sparse_coo tensor, not a dense one"),
    "meta_buffer": (with_buffers(lambda buffer: torch.empty_like(buffer, device="meta")),
                    "optimizer_state_dict['state'][0]['momentum_buffer'] is a tensor without values "
                    "(on the meta device)"),
    "sparse_buffer": (with_buffers(lambda buffer: buffer.to_sparse()),
                      "optimizer_state_dict['state'][0]['momentum_buffer'] is a sparse_coo tensor, not a dense one"),
    "nan_buffers": (with_buffers(lambda buffer: buffer * math.nan, every=True),
                    "optimizer_state_dict['state'][0]['momentum_buffer'] is a tensor with NaN or infinite values"),
}


@pytest.mark.parametrize("name", TENSORS)
def test_a_checkpoint_s_damaged_tensors_are_one_line_for_every_reader(one_epoch_run, tmp_path, name, capsys):
    """Before, NaN weights or a negative variance predicted `0 (nan%)` and exited 0, a sparse or meta buffer was a
    traceback on --resume, NaN buffers blamed the learning rate."""
    from test_evaluate import draw

    damage, reason = TENSORS[name]
    path = tmp_path / f"{name}.pth"
    torch.save(damage(torch.load(one_epoch_run[1], weights_only=True)), path)
    draw(7).save(tmp_path / "seven.png")
    assert run_cli(evaluate.main, [str(path), "--image", str(tmp_path / "seven.png")]) == 1
    error = capsys.readouterr().err
    assert error == f"error: {path}: damaged checkpoint: {reason}\n"
    assert run_cli(train.main, ["--resume", str(path), "--epochs", "2", "--quiet",
                                "--models-dir", str(tmp_path / "models")]) == 1
    assert capsys.readouterr().err == error
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def start_with(encoding, *args):
    """A script started with stdout and stderr in `encoding`, strict: a character it cannot take is an error."""
    env = {**os.environ, "PYTHONIOENCODING": f"{encoding}:strict"}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_a_run_that_worked_exits_0_whatever_its_names_are_and_the_terminal_takes(one_epoch_run, tmp_path):
    """Names that are not UTF-8 and names with control characters are printed escaped, on one line each, on a
    UTF-8 terminal and on an ASCII one (the two runs start together)."""
    from test_evaluate import draw

    folder = os.fsencode(tmp_path) + b"/m\xff\x1b[2J\nodd"
    os.mkdir(folder)
    with open(folder + b"/model.pth", "wb") as copy:
        copy.write(one_epoch_run[1].read_bytes())
    draw(7).save(os.fsdecode(folder + b"/seven\n.png"))
    runs = {encoding: start_with(encoding, "evaluate.py", folder, "--image", folder + b"/seven\n.png")
            for encoding in ("utf-8", "ascii")}
    shown = f"{tmp_path}/m\\xff\\x1b[2J\\nodd".encode()
    for encoding, process in runs.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0 and stderr == b"", (encoding, stderr)
        lines = stdout.splitlines()
        assert len(lines) == 3 and lines[0] == b"taking model.pth: the only checkpoint in " + shown, lines
        assert lines[1].startswith(b"checkpoint: " + shown + b"/model.pth (HybridCNN, "), lines
        assert re.fullmatch(re.escape(shown) + rb"/seven\\n\.png: 7 \(.*\)", lines[2]), (encoding, lines)


def test_strings_a_checkpoint_records_are_printed_escaped_and_short(one_epoch_run, tmp_path, capsys):
    """A checkpoint's device, torch version, architecture and archive member names come from whoever wrote the file:
    their escape codes and line breaks are shown, not obeyed, and a long one is cut to a readable line."""
    from test_evaluate import draw

    state = torch.load(one_epoch_run[1], weights_only=True)
    torch.save(state | {"device_used": "cpu\x1b[31m\nrestarting", "torch_version": "9" * 100},
               tmp_path / "strings.pth")
    seven = ["--image", str(tmp_path / "seven.png")]  # the checkpoint's line comes first in either mode
    draw(7).save(seven[1])
    assert run_cli(evaluate.main, [str(tmp_path / "strings.pth"), *seven]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "trained on cpu\\x1b[31m\\nrestarting, torch 999" in first and len(first) < 400, first

    torch.save(state | {"architecture": "Net\n" * 50}, tmp_path / "architecture.pth")
    assert run_cli(evaluate.main, [str(tmp_path / "architecture.pth"), *seven]) == 0  # a name: the layers decide
    first = capsys.readouterr().out.splitlines()[0]
    assert "architecture.pth (Net\\nNet\\n" in first and len(first) < 400, first

    torch.save(state | {"architecture": "Net\n" * 10_000}, tmp_path / "long.pth")  # longer than any name
    assert run_cli(evaluate.main, [str(tmp_path / "long.pth"), *seven]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'long.pth'}: damaged checkpoint: architecture is the text 'Net\\nNet")
    assert error.endswith("not a text of at most 200 characters\n") and len(error) < 400, error

    with zipfile.ZipFile(tmp_path / "artifact.zip", "w") as artifact:
        artifact.writestr(zipfile.ZipInfo("old.pth", (2026, 1, 1, 0, 0, 0)), one_epoch_run[1].read_bytes())
        artifact.writestr(zipfile.ZipInfo("\x1b]0;owned\x07new\r.pth", (2026, 2, 1, 0, 0, 0)),
                          one_epoch_run[1].read_bytes())
    assert run_cli(evaluate.main, [str(tmp_path / "artifact.zip"), *seven]) == 0
    said = capsys.readouterr().out.splitlines()
    newest = "\\x1b]0;owned\\x07new\\r.pth"
    assert said[0] == f"{tmp_path / 'artifact.zip'} holds 2 checkpoints: reading the newest, {newest}"
    assert said[1].startswith(f"checkpoint: {tmp_path / 'artifact.zip'}: {newest} (HybridCNN")


def test_output_cut_short_by_its_reader_ends_quietly(narrow_checkpoint):
    """`python evaluate.py models | head -1`: the reader leaves after a line; the program stops without a traceback,
    with the status of a command that SIGPIPE ended (141), as other command-line tools do."""
    process = subprocess.Popen([sys.executable, "evaluate.py", str(narrow_checkpoint)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"checkpoint: ")
    process.stdout.close()
    assert process.wait(timeout=300) == 141
    assert process.stderr.read() == b""
