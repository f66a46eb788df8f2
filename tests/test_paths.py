"""Paths a user hands the project that are not what they seem: a FIFO or a device where a file belongs, and names
the system refuses. Each is one line and exit 1, at once (a FIFO would block a reader forever, /dev/zero never
end it); nothing the user had is touched. A blocked read is stopped by time_limit; a read of /dev/zero cannot
be stopped inside the process, so that case runs in one of its own, under a timeout."""
import importlib
import os
import shutil
import zipfile

import pytest
import torch

import train
from utils.data import SHA256, raw_dir
from utils.errors import run_cli

from conftest import quiet_config, run_in_process, run_script, time_limit

LONG = "x" * 300  # one name over the 255 bytes a file system allows


def one_line(result, message):
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


@pytest.fixture
def fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe.pth")
    return tmp_path / "pipe.pth"


@pytest.mark.parametrize("kind, message", [("fifo", "is a FIFO (named pipe), not a regular file"),
                                           ("zeros", "is a character device, not a regular file")])
def test_an_mnist_file_that_is_a_fifo_or_dev_zero_is_one_line(real_raw_dir, tmp_path, kind, message):
    raw = raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in SHA256:
        shutil.copyfile(real_raw_dir / name, raw / name)
    victim = raw / "t10k-labels-idx1-ubyte"
    victim.unlink()
    if kind == "fifo":
        os.mkfifo(victim)
        with time_limit(30):
            result = run_in_process("-m", "utils.data", "--data-dir", str(tmp_path))
    else:
        victim.symlink_to("/dev/zero")
        result = run_script("-m", "utils.data", "--data-dir", str(tmp_path), timeout=60)
    one_line(result, f"{victim} {message}")
    assert (victim.is_fifo() if kind == "fifo" else os.readlink(victim) == "/dev/zero")


def test_a_checkpoint_that_is_a_fifo_is_one_line_for_every_reader(fifo, tmp_path):
    for argv in (["evaluate.py", str(fifo)], ["train.py", "--resume", str(fifo), "--epochs", "2", "--models-dir",
                                              str(tmp_path)]):
        with time_limit(30):
            one_line(run_in_process(*argv), f"{fifo} is a FIFO (named pipe), not a regular file")


def test_an_image_that_is_a_fifo_is_one_line_and_the_next_is_read(one_epoch_run, fifo, tmp_path):
    from test_evaluate import draw

    draw(7).save(tmp_path / "seven.png")
    with time_limit(30):
        result = run_in_process("evaluate.py", str(one_epoch_run[1]), "--image", str(fifo), str(tmp_path / "seven.png"))
    one_line(result, f"error: {fifo} is a FIFO (named pipe), not a regular file")
    assert "seven.png: " in result.stdout


@pytest.mark.parametrize("script, argv", [
    ("evaluate", [LONG]), ("evaluate", [f"{LONG}/model.pth"]), ("train", ["--resume", LONG, "--epochs", "2"]),
    ("train", ["--models-dir", LONG]), ("run_pipeline", ["--samples-dir", LONG]),
    ("evaluate", [LONG, "--min-accuracy", "95", "--summary", "summary.md"]), ("utils.data", ["--data-dir", LONG])])
def test_a_name_too_long_is_one_line(script, argv, capsys):
    assert run_cli(importlib.import_module(script).main, argv) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.endswith(": File name too long\n"), error


def test_resume_takes_what_evaluate_takes_a_folder_or_a_ci_artifact(tmp_path, tiny_mnist):
    """--resume of a folder reads its newest checkpoint, of a downloaded artifact the checkpoint inside, and both
    continue exactly as the .pth itself does."""
    _, path, _ = train.train(quiet_config(tmp_path / "first"), data=tiny_mnist, log=lambda message: None)
    with zipfile.ZipFile(tmp_path / "mnist-model-12.zip", "w") as artifact:
        artifact.write(path, path.name)
    weights, said = {}, []
    for source in (path, path.parent, tmp_path / "mnist-model-12.zip"):
        config = quiet_config(tmp_path / "more", epochs=2, resume=str(source))
        weights[source] = train.train(config, data=tiny_mnist, log=said.append)[0].state_dict()
    assert f"resumed {tmp_path / 'mnist-model-12.zip'}: {path.name}: 1 epoch(s) done" in "\n".join(said)
    for other in list(weights)[1:]:
        assert all(torch.equal(a, b) for a, b in zip(weights[path].values(), weights[other].values()))
