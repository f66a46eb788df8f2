"""Comparing runs: each run's metrics as a CSV file beside its checkpoint, `evaluate.py DIR --list`, the readers
saying which checkpoint they took, and draw.py's /predict as curl users call it."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import pytest
import torch
from PIL import Image

import evaluate
import train
from utils import plotting
from utils.errors import run_cli

from conftest import REPO, fresh_copy, quiet_config, run_shell

FIXTURES = REPO / "tests" / "fixtures"


def test_a_run_writes_its_metrics_as_csv_that_matches_its_history(tmp_path, tiny_mnist):
    _, path, history = train.train(quiet_config(tmp_path, epochs=2, batch_size=100), data=tiny_mnist,
                                   log=lambda message: None)
    with open(path.with_suffix(".csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds",
                             "images_per_s"]
    recorded = torch.load(path, weights_only=True)["history"]
    assert len(rows) == len(recorded) == 2
    for row, epoch in zip(rows, recorded):
        assert int(row["epoch"]) == epoch["epoch"]
        for column, key in (("train_loss", "train_loss"), ("train_accuracy", "train_accuracy"),
                            ("test_loss", "test_loss"), ("test_accuracy", "test_accuracy"), ("lr", "lr"),
                            ("seconds", "train_seconds")):
            assert float(row[column]) == pytest.approx(epoch[key], rel=1e-5), column
        assert int(row["images_per_s"]) == round(len(tiny_mnist.train_labels) / epoch["train_seconds"])
    assert float(rows[0]["lr"]) > float(rows[1]["lr"]) > 0  # the one-cycle schedule's rate at each epoch's end
    assert sorted(file.name for file in path.parent.iterdir()) == [path.with_suffix(".csv").name, path.name]


def test_the_training_curves_are_drawn_from_a_run_s_csv(tmp_path, tiny_mnist, capsys):
    _, path, _ = train.train(quiet_config(tmp_path, epochs=2, batch_size=100), data=tiny_mnist,
                             log=lambda message: None)
    assert run_cli(plotting.main, [str(path.with_suffix(".csv")), "--samples-dir", str(tmp_path / "pictures")]) == 0
    (picture,) = (tmp_path / "pictures").glob("training_curves_*.png")
    assert capsys.readouterr().out == f"training curves: {picture}\n"
    assert Image.open(picture).size == (1100, 400)
    (tmp_path / "other.csv").write_text("name,score\nx,1\n")
    assert run_cli(plotting.main, [str(tmp_path / "other.csv"), "--samples-dir", str(tmp_path / "pictures")]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path / 'other.csv'}: not a run's metrics file (the CSV "
                                       "train.py writes beside its checkpoint)\n")


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, tiny_mnist):
    """A folder of two runs (SGD of widths 4,8; Adam of 6,12, two epochs) and a damaged file, in that order of
    age, and a zip artifact of the same three."""
    folder = tmp_path_factory.mktemp("runs")
    runs = [dict(channels=(4, 8)), dict(channels=(6, 12), optimizer="adam", epochs=2)]
    for number, options in enumerate(runs):
        _, path, _ = train.train(quiet_config(folder, **options), data=tiny_mnist, log=lambda message: None)
        os.utime(path, (1_800_000_000 + number, 1_800_000_000 + number))
    (folder / "models" / "damaged.pth").write_bytes(b"not a checkpoint")
    os.utime(folder / "models" / "damaged.pth", (1_800_000_010, 1_800_000_010))
    with zipfile.ZipFile(folder / "artifact.zip", "w") as artifact:
        for number, path in enumerate(sorted(folder.glob("models/*.pth"), key=lambda path: path.stat().st_mtime)):
            artifact.writestr(zipfile.ZipInfo(path.name, (2027, 1, 1 + number, 0, 0, 0)), path.read_bytes())
    return folder


def listed(path, capsys) -> tuple[int, list[str]]:
    code = run_cli(evaluate.main, [str(path), "--list"])
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("where", ["models", "artifact.zip"])
def test_list_shows_every_checkpoint_newest_first_and_a_damaged_one_with_its_reason(three_runs, where, capsys):
    code, lines = listed(three_runs / where, capsys)
    assert code == 1  # one of them is damaged
    assert lines[0] == f"3 checkpoint(s) in {three_runs / where}, newest first (evaluate.py and draw.py take the first):"
    assert lines[1].split() == ["name", "date", "network", "parameters", "optimizer", "and", "recipe", "epochs",
                                "accuracy"]
    damaged, adam, sgd = lines[2:]
    assert damaged.split()[0] == "damaged.pth" and damaged.endswith(
        "damaged: not a readable checkpoint (truncated, or not a PyTorch file)")
    # the date each file was written, by which they are sorted (not the one recorded inside)
    dates = (["2027-01-03 00:00", "2027-01-02 00:00", "2027-01-01 00:00"] if where == "artifact.zip" else
             [time.strftime("%Y-%m-%d %H:%M", time.localtime(1_800_000_000 + age)) for age in (10, 1, 0)])
    assert [" ".join(line.split()[1:3]) for line in (damaged, adam, sgd)] == dates
    for line, widths, optimizer, epochs in ((adam, "6,12", "Adam, batch 64, lr 0.005", "2/2"),
                                            (sgd, "4,8", "SGD, batch 80, lr 0.25", "1/1")):
        parts = line.split()
        state = torch.load(three_runs / "models" / parts[0], weights_only=True)
        assert parts[3:5] == [widths, f"{state['parameters']:,}"] and f"  {optimizer}, " in line
        assert parts[-2:] == [epochs, f"{state['final_test_accuracy']:.2f}%"]


def test_list_of_nothing_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for path, reason in ((tmp_path / "empty", f"no checkpoint (*.pth) in {tmp_path / 'empty'}"),
                         (tmp_path / "missing", f"checkpoint {tmp_path / 'missing'} does not exist")):
        assert run_cli(evaluate.main, [str(path), "--list"]) == 1
        assert capsys.readouterr() == ("", f"error: {reason}\n")


def test_a_folder_s_reader_says_which_checkpoint_it_took(three_runs, tmp_path, capsys):
    folder = tmp_path / "models"
    shutil.copytree(three_runs / "models", folder)
    (folder / "damaged.pth").unlink()
    newest = max(folder.glob("*.pth"), key=lambda path: path.stat().st_mtime)
    image = ["--image", str(FIXTURES / "digit_1.png")]
    assert run_cli(evaluate.main, [str(folder), *image]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"taking {newest.name}: the newest of 2 checkpoints in {folder}"
    assert said[1].startswith(f"checkpoint: {newest} ")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_predict_reads_curl_s_multipart_form_as_its_raw_bytes_and_a_wrong_method_gets_405(one_epoch_run):
    from test_draw import start_server

    process, url = start_server(one_epoch_run[1])
    try:
        digit = str(FIXTURES / "digit_2.png")
        answers = [json.loads(subprocess.run(["curl", "-s", *form, url + "predict"], capture_output=True,
                                             check=True).stdout) for form in (["-F", f"file=@{digit}"],
                                                                              ["--data-binary", f"@{digit}"])]
        assert answers[0]["probabilities"] == answers[1]["probabilities"] and answers[0]["image"] == answers[1]["image"]
        two = subprocess.run(["curl", "-s", "-F", f"a=@{digit}", "-F", f"b=@{digit}", url + "predict"],
                             capture_output=True, check=True).stdout
        assert json.loads(two) == {"error": "a multipart form with one file in it, not 2"}
        for path, method, allowed in (("predict", "GET", "POST"), ("", "POST", "GET, HEAD"), ("about", "PUT",
                                                                                          "GET, HEAD")):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(urllib.request.Request(url + path, b"x" if method != "GET" else None,
                                                              method=method), timeout=60)
            assert (answer.value.code, answer.value.headers["Allow"]) == (405, allowed), (path, method)
    finally:
        process.terminate()
        process.wait(timeout=60)


SECTION = (REPO / "README.md").read_text().split("\n## Compare runs\n")[1].split("\n## ")[0]
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", SECTION, re.DOTALL)  # (language, text) in the order shown


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_s_compare_runs_section_works_and_prints_as_shown(tmp_path, real_raw_dir):
    """Its two runs, their CSV and the --list table, then its two curl calls to `python draw.py`, in a fresh copy,
    as written: each prints what the README shows, but for the times, dates and accuracies of this machine."""
    csv_shown, table_shown, calls, answer_shown = [text for _, text in BLOCKS]
    runs = [" ".join(command.split()) for command in re.findall(r"`(python train\.py [^`]+)`", SECTION)]
    assert len(runs) == 2
    fresh_copy(tmp_path, real_raw_dir)
    for command in runs:
        result = run_shell(command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr[-2000:])
    first = min((tmp_path / "models").glob("*.csv"))
    lines = first.read_text().splitlines()
    assert lines[0] == csv_shown.splitlines()[0] and [row.split(",")[0] for row in lines[1:]] == ["1", "2"]
    listing = run_shell("python evaluate.py models --list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    shown_lines, lines = table_shown.splitlines(), listing.stdout.splitlines()
    assert lines[:2] == shown_lines[:2] and len(lines) == len(shown_lines)
    for line, shown in zip(lines[2:], shown_lines[2:]):  # the network and recipe as shown; its own name and figures
        assert line.split()[3:-1] == shown.split()[3:-1], (line, shown)
    server = subprocess.Popen([sys.executable, "draw.py"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        said = [server.stdout.readline() for _ in range(3)]
        if server.poll() is not None and "in use" in server.stderr.read():
            pytest.skip("port 8000, the README's, is in use on this machine")
        assert said[2].startswith("draw a digit at http://127.0.0.1:8000/"), said
        answers = [run_shell(call, cwd=tmp_path) for call in calls.splitlines()]
        assert [answer.stdout.strip()[:30] for answer in answers] == [answer_shown.strip()[:30]] * 2
        assert answers[0].stdout == answers[1].stdout
    finally:
        server.terminate()
        server.wait(timeout=60)
