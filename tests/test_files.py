"""Files the project writes: a full disk, a read-only folder or a file where a folder should be is one line
that names the path and the reason, found before the work where it can be; nothing half-written is left,
whenever Ctrl-C lands; what dead runs left is cleaned, a live run's file never; files follow the umask."""
import os
import re
import socket
import stat
import subprocess
import sys

import pytest

import utils.files
from utils.checkpoint import save_new, save_over
from utils.data import FETCHING
from utils.errors import UserError
from utils.files import PARTIAL, remove_leftovers, writable_folder

from conftest import needs_mount, run_in_process


@pytest.mark.slow
@needs_mount
def test_a_full_disk_at_the_checkpoint_is_one_line_and_the_last_good_checkpoint_stays(small_disk, tmp_path, mnist):
    disk = tmp_path / "disk"  # room for one checkpoint, not for its replacement beside it
    result = small_disk(disk, "size=256k", "train.py", "--epochs", "2", "--quiet", "--models-dir", str(disk))
    assert result.returncode == 1, result.stderr
    assert re.fullmatch(rf"error: cannot write {disk}/model_cpu_\d{{8}}_\d{{6}}\.pth: No space left on device\n",
                        result.stderr)
    assert "epoch 1/2" in result.stdout and "epoch 2/2" in result.stdout
    checkpoint, metrics = sorted(result.left, key=lambda name: name.endswith(".csv"))  # epoch 1's, whole; no temporary
    assert re.fullmatch(r"model_cpu_\d{8}_\d{6}\.pth", checkpoint) and metrics == checkpoint[:-4] + ".csv"

    result = small_disk(disk, "size=100k", "train.py", "--epochs", "1", "--quiet", "--models-dir", str(disk))
    assert result.returncode == 1 and "No space left on device" in result.stderr and result.left == []


@needs_mount
def test_pictures_on_a_full_disk_are_one_line(small_disk, tmp_path, mnist):
    disk = tmp_path / "disk"
    result = small_disk(disk, "size=8k", "run_pipeline.py", "--samples-dir", str(disk))
    assert result.returncode == 1
    assert re.fullmatch(rf"error: cannot write {disk}/augmentation_\d{{8}}_\d{{6}}\.png: No space left on device\n",
                        result.stderr)
    assert result.left == []


@needs_mount
def test_a_read_only_folder_is_found_before_any_training(small_disk, tmp_path, mnist):
    disk = tmp_path / "disk"
    result = small_disk(disk, "ro", "train.py", "--epochs", "1", "--quiet", "--models-dir", str(disk))
    assert (result.returncode, result.stderr) == (1, f"error: cannot write in {disk}: Read-only file system\n")
    assert "epoch" not in result.stdout
    result = small_disk(disk, "ro", "run_pipeline.py", "--samples-dir", str(disk / "pictures"))
    assert (result.returncode, result.stderr) == (1, f"error: cannot create the folder {disk / 'pictures'}: "
                                                     "Read-only file system\n")
    assert "== 1. data" not in result.stdout


def test_a_file_where_a_folder_belongs_is_one_line(tmp_path, mnist):
    (tmp_path / "taken").write_text("my notes")
    for script, flag in (("train.py", "--models-dir"), ("run_pipeline.py", "--samples-dir")):
        result = run_in_process(script, flag, str(tmp_path / "taken"))
        assert (result.returncode, result.stderr) == (1, f"error: {tmp_path / 'taken'} is a file, not a folder\n")
    assert (tmp_path / "taken").read_text() == "my notes"


class Interrupt:
    """Wraps one os function: the real call runs, then Ctrl-C lands (a KeyboardInterrupt, as Python raises
    for SIGINT between two bytecodes) right after it, the unluckiest moment for cleanup."""

    def __init__(self, monkeypatch, name):
        real = getattr(os, name)

        def call(*args, **kwargs):
            real(*args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(utils.files.os, name, call)


@pytest.mark.parametrize("moment", ["open", "fsync", "link", "replace"])
def test_ctrl_c_at_any_moment_of_a_save_leaves_no_temporary_file(tmp_path, moment, monkeypatch):
    first = save_new({"step": 1}, tmp_path, "cpu")
    Interrupt(monkeypatch, moment)
    with pytest.raises(KeyboardInterrupt):
        if moment == "replace":
            save_over({"step": 2}, first)
        else:
            save_new({"step": 2}, tmp_path, "cpu")
    left = sorted(path.name for path in tmp_path.iterdir())
    assert not [name for name in left if name.startswith(".")]
    assert first.name in left


def test_leftovers_of_dead_runs_go_and_a_live_runs_stay(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    names = {"dead": f"{PARTIAL}{host}-{dead.pid}-0a1b2c3d.pth", "live": f"{PARTIAL}{host}-{os.getpid()}-0a1b2c3d.pth",
             "other machine": f"{PARTIAL}another-{host}-{dead.pid}-0a1b2c3d.pth", "user's": ".partial-notes.txt"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    writable_folder(tmp_path)  # what every writer calls before its work
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[key] for key in names if key != "dead")

    fetches = {"dead": f"{FETCHING}{host}-{dead.pid}-x1y2", "live": f"{FETCHING}{host}-{os.getpid()}-x1y2"}
    for name in fetches.values():  # the folders a fetch of MNIST fills, half full when its run was killed
        (tmp_path / name).mkdir()
        (tmp_path / name / "train-images-idx3-ubyte").write_bytes(b"x")
    remove_leftovers(tmp_path, FETCHING)
    assert not (tmp_path / fetches["dead"]).exists() and (tmp_path / fetches["live"]).is_dir()


@pytest.mark.skipif(os.name == "nt", reason="no umask on Windows")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = save_new({"step": 1}, tmp_path, "cpu")
        save_over({"step": 2}, path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_writable_folder_makes_the_folder_and_leaves_nothing_in_it(tmp_path):
    assert writable_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot create the folder .*: Not a directory"):
        writable_folder(tmp_path / "file" / "sub")
