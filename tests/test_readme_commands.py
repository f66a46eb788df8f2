"""The commands the original README documents, run exactly as written in a fresh copy of the repo (the
training command is conftest's one_epoch_run, which test_train checks)."""
import pytest
from PIL import Image

from conftest import run_shell


@pytest.mark.slow
def test_the_original_test_command_works_as_written(clone, one_epoch_run):
    result = run_shell("PYTHONPATH=$PYTHONPATH:$(pwd) pytest tests/test_model.py -v", cwd=clone)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1] and "failed" not in result.stdout.splitlines()[-1]


def test_the_original_demo_command_draws_the_grid_and_trains_nothing(clone, one_epoch_run):
    checkpoints = sorted((clone / "models").glob("*.pth"))  # the training command's, and no more after this
    result = run_shell("python run_pipeline.py --aug-samples 3 --aug-per-sample 5", cwd=clone)
    assert result.returncode == 0, result.stderr
    assert "epochs trained: 0" in result.stdout and "no checkpoint" in result.stdout
    assert sorted((clone / "models").glob("*.pth")) == checkpoints
    (grid,) = (clone / "samples").glob("augmentation_*.png")
    assert Image.open(grid).size == (6 * 140, 3 * 150 + 40)  # 3 rows: the original and 5 augmentations each
