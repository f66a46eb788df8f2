"""What users depend on across versions: a checkpoint written by main at 01e8972 (tests/fixtures: one epoch, seed
1, before the network was an nn.Sequential) still loads, evaluates to its recorded figure, reads the same digits
with the same probabilities (evaluate.py --image and draw.py alike) and resumes; a run interrupted under the
oldest torch that requirements.txt allows carries on under this one."""
import json
import re
import signal
from pathlib import Path

import pytest
import torch

import draw
import evaluate
import train
from model.checkpoint import load_model

from conftest import quiet_config, run_in_process

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHECKPOINT = FIXTURES / "model_cpu_01e8972.pth"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())  # what 01e8972 itself read, recorded by it
# epoch 1 of 3 on tiny_mnist's digits, seed 3, written under torch 2.6.0 (requirements.txt's floor)
INTERRUPTED = FIXTURES / "interrupted_torch2.6.pth"


def test_an_earlier_version_s_checkpoint_evaluates_to_its_recorded_figure():
    result = run_in_process("evaluate.py", str(CHECKPOINT))
    assert result.returncode == 0, result.stderr
    measured = float(re.search(r"^test set: ([\d.]+)% ", result.stdout, re.MULTILINE)[1])
    assert measured == pytest.approx(EXPECTED["recorded_test_accuracy"], abs=evaluate.TOLERANCE)
    assert ": matches" in result.stdout


def test_an_earlier_version_s_checkpoint_reads_the_same_digits_in_evaluate_and_draw():
    model, state = load_model(CHECKPOINT)
    reader = draw.Reader(model, state, CHECKPOINT)
    result = run_in_process("evaluate.py", str(CHECKPOINT), "--image", *(str(FIXTURES / name) for name in EXPECTED["images"]))
    assert result.returncode == 0, result.stderr
    for name, expected in EXPECTED["images"].items():
        printed = re.search(rf"{re.escape(name)}: (\d) \(([\d.]+)%", result.stdout)
        assert int(printed[1]) == expected["digit"] == expected["label"]
        assert float(printed[2]) == pytest.approx(max(expected["probabilities"]) * 100, abs=0.051)
        page = reader.read((FIXTURES / name).read_bytes())
        assert page["digit"] == expected["digit"]
        assert page["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-4)


def test_draw_py_s_page_reads_them_the_same_over_http():
    from test_draw import request, start_server

    process, url = start_server(CHECKPOINT)
    try:
        for name, expected in EXPECTED["images"].items():
            status, answer = request(url + "predict", (FIXTURES / name).read_bytes())
            assert status == 200 and answer["digit"] == expected["digit"]
            assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-4)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


def test_an_earlier_version_s_checkpoint_resumes(tmp_path, tiny_mnist):
    said = []
    model, path, history = train.train(quiet_config(tmp_path, epochs=2, resume=str(CHECKPOINT)), data=tiny_mnist,
                                       log=said.append)
    assert [entry["epoch"] for entry in history] == [1, 2] and history[0]["test_accuracy"] == pytest.approx(99.40)
    assert any(line.startswith(f"resumed {CHECKPOINT}: 1 epoch(s) done, 99.40% test accuracy") for line in said)
    state = torch.load(path, weights_only=True)
    assert state["build_model"] == {"channels": [10, 20, 28], "dropout": 0.15} and "3.2.weight" in state["layers"]


def test_a_run_interrupted_under_the_oldest_torch_carries_its_schedule_on_under_this_one(tmp_path, tiny_mnist):
    """torch's versions record OneCycleLR's state under other keys (2.6's has verbose, 2.14's _is_initial): the
    schedule goes on from the recorded step in this torch's scheduler, to its last step. (Not to the weights of
    this torch's own uninterrupted run: the versions' kernels round differently, 1e-3 apart after an epoch.)"""
    state = torch.load(INTERRUPTED, weights_only=True)
    assert state["torch_version"].startswith("2.6.") and "verbose" in state["schedule_state"]
    said = []
    _, path, history = train.train(quiet_config(tmp_path, epochs=3, resume=str(INTERRUPTED)), data=tiny_mnist,
                                   log=said.append)
    assert any(line.endswith("1 epoch(s) done, 64.00% test accuracy; carrying on its schedule") for line in said), said
    schedule = torch.load(path, weights_only=True)["schedule_state"]
    assert len(history) == 3 and schedule["last_epoch"] == schedule["total_steps"] == 3 * 16
