import re

import pytest
import torch
from PIL import Image

import run_pipeline

from conftest import REPO, assert_bad_flags_rejected, run_in_process, run_script


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path, mnist):
    """A run that misses its bar (one epoch does not reach 99.99%) says so and exits 1, with everything it made
    kept. (A run that reaches it: tests/test_workflow.py runs the CI's pipeline step.)"""
    models, samples = tmp_path / "models", tmp_path / "samples"
    result = run_script("run_pipeline.py", "--epochs", "1", "--aug-samples", "3", "--aug-per-sample", "5", "--quiet",
                        "--models-dir", str(models), "--samples-dir", str(samples), "--min-accuracy", "99.99")
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "samples drawn: 3, augmentations per sample: 5" in out and "epochs trained: 1" in out
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)% \(minimum 99.99%: FAILED\)", out).group(1))
    assert result.stderr == f"error: test accuracy {accuracy:.2f}% is below the minimum 99.99%\n"
    (checkpoint,) = models.glob("*.pth")
    assert f"checkpoint: {checkpoint}" in out
    assert round(torch.load(checkpoint, weights_only=True)["final_test_accuracy"], 2) == accuracy
    kinds = sorted(re.sub(r"_\d{8}_\d{6}\.png$", "", path.name) for path in samples.glob("*.png"))
    assert kinds == ["augmentation", "confident_mistakes", "confusion_matrix", "training_curves"]
    assert "pictures written: 4" in out and re.search(r"total time: [\d.]+ s", out)
    # The grid: 3 rows of 6 panels (original + 5) at 140 x 150 pixels each, plus the title band.
    (grid,) = samples.glob("augmentation_*.png")
    assert Image.open(grid).size == (6 * 140, 3 * 150 + 40)


@pytest.mark.parametrize("epochs", [[], ["--epochs", "0"]], ids=["no --epochs", "--epochs 0"])
def test_demo_only_leaves_no_checkpoint(tmp_path, mnist, epochs):
    """Without --epochs, as the original README documents it: the augmentation demo alone."""
    samples, before = tmp_path / "samples", sorted((REPO / "models").iterdir())
    result = run_in_process("run_pipeline.py", *epochs, "--aug-samples", "2", "--aug-per-sample", "7",
                            "--samples-dir", str(samples))  # --models-dir would be refused: it is for training
    assert result.returncode == 0, result.stderr
    assert "epochs trained: 0" in result.stdout and "== 3. training" not in result.stdout
    assert sorted((REPO / "models").iterdir()) == before
    (grid,) = samples.glob("augmentation_*.png")
    assert Image.open(grid).size == (8 * 140, 2 * 150 + 40)
    assert "no checkpoint" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["--aug-samples", "0"], "--aug-samples: must be from 1 to 64, not 0"),
    (["--aug-per-sample", "65"], "--aug-per-sample: must be from 1 to 64, not 65"),
    (["--aug-samples", "three"], "--aug-samples: 'three' is not a whole number"),
    (["--epochs", "-1"], "--epochs: must be from 0 to 200, not -1"),
    (["--epochs", "one"], "--epochs: 'one' is not a whole number"),
    (["--min-accuracy", "nan"], "--min-accuracy: must be from 0 to 100, not nan"),
    (["--min-accuracy", "101"], "--min-accuracy: must be from 0 to 100, not 101"),
    (["--seed", str(2**64)], "--seed: must be from 0 to 18446744073709551615"),
    (["--resume", "model.pth"], "--resume: for training only; add --epochs N (without it, run_pipeline.py draws the "
                                "augmentation pictures alone)"),
    (["--epochs", "0", "--device", "cuda", "--models-dir", "elsewhere", "--batch-size", "64"],
     "--batch-size, --device, --models-dir: for training only; add --epochs N"),
    (["--channels", "8,16", "--quiet", "--min-accuracy", "99"],  # before: ignored in silence
     "--channels, --quiet, --min-accuracy: for training only; add --epochs N"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys):
    assert_bad_flags_rejected(run_pipeline.main, argv, message, capsys)


def test_fixed_names_replace_the_last_pictures(tmp_path, mnist):
    """How the README's pictures are made: the same names every time, the old file replaced."""
    folder = tmp_path / "images"
    for _ in range(2):
        result = run_in_process("run_pipeline.py", "--aug-samples", "2", "--aug-per-sample", "3",
                                "--samples-dir", str(folder), "--fixed-names")
        assert result.returncode == 0, result.stderr
        assert sorted(path.name for path in folder.iterdir()) == ["augmentation.png"]
    assert Image.open(folder / "augmentation.png").size == (4 * 140, 2 * 150 + 40)
