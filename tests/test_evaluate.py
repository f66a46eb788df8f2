"""evaluate.py: the test-set figures of a checkpoint against what it records, and digits read from
ordinary image files (drawn dark on white, any size and mode) the way MNIST digits were made."""
import io
import os
import pickle
import re
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

import evaluate
import train
from model import HybridCNN, count_parameters
from model.predict import MEAN, STD, normalize
from utils.errors import run_cli
from utils.images import load_digit, to_mnist

from conftest import assert_bad_flags_rejected, run_in_process


def test_prints_the_accuracy_the_checkpoint_records(narrow_checkpoint):
    path = narrow_checkpoint
    recorded = torch.load(path, weights_only=True)["final_test_accuracy"]
    result = run_in_process("evaluate.py", str(path.parent))  # a folder: its newest checkpoint
    assert result.returncode == 0, result.stderr
    parameters = count_parameters(HybridCNN(channels=(4, 8)))
    assert f"checkpoint: {path} (HybridCNN, {parameters:,} parameters, 1 epoch(s), seed 1" in result.stdout
    assert f"test set: {recorded:.2f}%" in result.stdout
    assert f"recorded in the checkpoint: {recorded:.2f}%: matches" in result.stdout
    per_class = re.findall(r"^  (\d): +[\d.]+% \(([\d,]+) of ([\d,]+)\)$", result.stdout, re.MULTILINE)
    assert [digit for digit, _, _ in per_class] == [str(digit) for digit in range(10)]
    correct = sum(int(right.replace(",", "")) for _, right, _ in per_class)
    assert sum(int(total.replace(",", "")) for _, _, total in per_class) == 10_000
    assert correct / 100 == pytest.approx(recorded, abs=1e-9)


def test_minimum_and_tampered_figures_fail(narrow_checkpoint, tmp_path, capsys):
    path = narrow_checkpoint
    assert run_cli(evaluate.main, [str(path), "--min-accuracy", "99.99"]) == 1
    assert "minimum 99.99%: FAILED" in capsys.readouterr().out

    state = torch.load(path, weights_only=True)
    state["final_test_accuracy"] = "99.1"
    torch.save(state, tmp_path / "damaged.pth")
    assert run_cli(evaluate.main, [str(tmp_path / "damaged.pth")]) == 1
    assert capsys.readouterr().err == \
        f"error: {tmp_path / 'damaged.pth'}: damaged checkpoint: final_test_accuracy is the text '99.1', not a number\n"

    assert run_cli(evaluate.main, [str(tmp_path / "empty")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("claimed, verdict", [(+0.05, 0), (-0.05, 0), (+0.3, 1), (-0.3, 1)])
def test_a_recorded_figure_off_by_more_than_a_tenth_of_a_point_fails(narrow_checkpoint, tmp_path, claimed,
                                                                     verdict, capsys):
    """Machines may differ by a few borderline digits (0.05 points passes); 0.3 points is other weights or data."""
    state = torch.load(narrow_checkpoint, weights_only=True)
    recorded = state["final_test_accuracy"] + claimed
    torch.save(state | {"final_test_accuracy": recorded}, tmp_path / "claims.pth")
    assert run_cli(evaluate.main, [str(tmp_path / "claims.pth")]) == verdict
    digits, more = round(abs(claimed) * 100), "fewer" if claimed > 0 else "more"
    out = capsys.readouterr()
    assert f"recorded in the checkpoint: {recorded:.2f}%: DIFFERS by {digits} test digit(s) ({more} correct here)" \
        in out.out
    assert ("larger than 0.1 points" in out.err) == bool(verdict)


def test_the_newest_of_several_checkpoints_in_a_folder_is_read(one_epoch_run, tmp_path, capsys):
    """By modification time, not by name: the seeds tell the copies apart."""
    folder = tmp_path / "models"
    folder.mkdir()
    state = torch.load(one_epoch_run[1], weights_only=True)
    for seed, name, when in [(11, "model_c.pth", 1_000), (12, "model_b.pth", 3_000), (13, "model_a.pth", 2_000)]:
        torch.save(state | {"seed": seed}, folder / name)
        os.utime(folder / name, (when, when))
    draw(1).save(tmp_path / "one.png")
    assert run_cli(evaluate.main, [str(folder), "--image", str(tmp_path / "one.png")]) == 0
    assert f"checkpoint: {folder / 'model_b.pth'} (HybridCNN" in capsys.readouterr().out


def independent_prediction(state, digit):
    """The class probabilities of one digit, from the checkpoint's weights in a plain evaluation-mode network:
    the softmax averaged over the digit and its four one-pixel shifts."""
    model = HybridCNN()
    model.load_state_dict(state["model_state_dict"])
    model.eval()
    image = (digit[None].float() / 255 - MEAN) / STD  # (1, 1, 28, 28)
    views = [image.roll(shift, dims) for shift, dims in [(0, 2), (1, 3), (-1, 3), (1, 2), (-1, 2)]]
    with torch.no_grad():
        return torch.stack([model(view).softmax(1)[0] for view in views]).mean(0)


def test_image_predictions_come_from_the_model_in_evaluation_mode(one_epoch_run, tmp_path, capsys):
    """The digit, its probability and the runner-up printed for each file are those of the trained network with
    its running BatchNorm statistics and no dropout, and the same on every run."""
    names = []
    for digit in (0, 2, 4, 7):
        draw(digit).save(tmp_path / f"{digit}.png")
        names.append(str(tmp_path / f"{digit}.png"))
    outputs = []
    for _ in range(2):
        assert run_cli(evaluate.main, [str(one_epoch_run[1]), "--image", *names]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    state = torch.load(one_epoch_run[1], weights_only=True)
    for name in names:
        probabilities = independent_prediction(state, load_digit(name)) * 100
        best, runner_up = probabilities.topk(2).indices.tolist()
        printed = re.search(rf"^{re.escape(name)}: (\d) \(([\d.]+)%; next: (\d) ([\d.]+)%\)$", outputs[0], re.MULTILINE)
        assert printed and (int(printed[1]), int(printed[3])) == (best, runner_up), outputs[0]
        assert float(printed[2]) == pytest.approx(probabilities[best].item(), abs=0.051)  # printed to 0.1
        assert float(printed[4]) == pytest.approx(probabilities[runner_up].item(), abs=0.051)


def draw(digit, size=(300, 400), pen=12):
    """A digit drawn in black on a white canvas, as in a paint program."""
    image = Image.new("RGB", size, "white")
    pencil, (w, h) = ImageDraw.Draw(image), size
    if digit == 0:
        pencil.ellipse([(0.3 * w, 0.15 * h), (0.7 * w, 0.85 * h)], outline="black", width=pen)
    elif digit == 1:
        pencil.line([(0.5 * w, 0.15 * h), (0.5 * w, 0.85 * h)], fill="black", width=pen)
    elif digit == 2:
        pencil.arc([(0.3 * w, 0.15 * h), (0.7 * w, 0.45 * h)], 180, 30, fill="black", width=pen)
        pencil.line([(0.66 * w, 0.38 * h), (0.28 * w, 0.85 * h), (0.75 * w, 0.85 * h)], fill="black", width=pen,
                    joint="curve")
    elif digit == 4:
        pencil.line([(0.55 * w, 0.15 * h), (0.25 * w, 0.6 * h), (0.75 * w, 0.6 * h)], fill="black", width=pen,
                    joint="curve")
        pencil.line([(0.6 * w, 0.35 * h), (0.6 * w, 0.85 * h)], fill="black", width=pen)
    elif digit == 7:
        pencil.line([(0.25 * w, 0.2 * h), (0.75 * w, 0.2 * h), (0.45 * w, 0.85 * h)], fill="black", width=pen,
                    joint="curve")
    return image


def transparent(image):
    """The same strokes on a transparent canvas: opaque where drawn."""
    alpha = Image.eval(image.convert("L"), lambda value: 255 - value)
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    layer.putalpha(alpha)
    return layer


def test_digits_drawn_dark_on_white_are_predicted(one_epoch_run, tmp_path):
    files = {  # several sizes, pens, modes and formats
        0: (draw(0), "zero.png"),
        1: (draw(1, (1200, 900), pen=3).convert("L"), "one_thin_pen.jpg"),
        2: (transparent(draw(2)), "two_transparent.png"),
        4: (draw(4, pen=40), "four_thick.png"),
        7: (draw(7, (1200, 900)).convert("P"), "seven_palette.png"),
    }
    for image, name in files.values():
        image.save(tmp_path / name)
    result = run_in_process("evaluate.py", str(one_epoch_run[1]), "--image",
                            *(str(tmp_path / name) for _, name in files.values()))
    assert result.returncode == 0, result.stderr
    for digit, (_, name) in files.items():
        assert re.search(rf"{re.escape(name)}: {digit} \(\d+\.\d%; next: \d ", result.stdout), result.stdout


@pytest.mark.parametrize("size, pen", [((300, 400), 12), ((1200, 900), 3), ((300, 400), 40), ((2000, 2000), 2)])
def test_drawn_digits_are_made_the_way_mnist_s_were(mnist, size, pen):
    """Whatever the canvas and the pen: the longer side 20 px, the centre of mass within half a pixel of (14, 14),
    strokes at full strength, and as much ink as the test set's digits of that class (between their 1st and 99th
    percentiles): a thin pen is widened, a straight 1 included."""
    rows, columns = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    for digit in (0, 1, 2, 4, 7):
        made = to_mnist(draw(digit, size, pen))[0].float()
        inked = made.nonzero()
        mass = made.sum()
        assert max(inked.max(0).values - inked.min(0).values + 1) == 20 and made.max() == 255
        assert abs((made * rows).sum() / mass - 14) <= 0.5 and abs((made * columns).sum() / mass - 14) <= 0.5
        same_class = mnist.test_images[mnist.test_labels == digit].float().sum((1, 2, 3))
        assert same_class.quantile(0.01) <= mass <= same_class.quantile(0.99), (digit, mass / 255)


def test_a_soft_brush_reaches_full_strength_as_mnist_s_strokes_do():
    """Blurred strokes fade when shrunk to 28x28: their strongest pixel is brought back to 255."""
    for digit in (0, 1, 7):
        assert to_mnist(draw(digit).filter(ImageFilter.GaussianBlur(8)))[0].max() == 255


def test_paper_texture_and_a_shadow_are_not_ink():
    """A photo of a drawing: grainy paper (noise of 4 grey levels) under a shadow that darkens one side by 20
    levels. The digit read is the one read from the clean drawing."""
    clean = np.asarray(draw(7).convert("L"), dtype=np.float32)
    shadow = np.linspace(0, 20, clean.shape[1], dtype=np.float32)[None, :]
    grain = np.random.default_rng(0).normal(0, 4, clean.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(clean - shadow + grain, 0, 255).astype(np.uint8))
    read, expected = to_mnist(photo).float(), to_mnist(Image.fromarray(clean.astype(np.uint8))).float()
    assert (read - expected).abs().mean() < 5


def test_a_photo_s_recorded_orientation_is_applied(tmp_path):
    """A camera stores the pixels as the sensor saw them and the rotation in the EXIF Orientation tag: 6 means
    "turn 90 degrees clockwise to view". The digit read is the upright one."""
    upright = draw(7).convert("L")
    upright.save(tmp_path / "upright.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", exif=exif)
    read, expected = load_digit(tmp_path / "sideways.jpg").float(), load_digit(tmp_path / "upright.jpg").float()
    assert (read - expected).abs().mean() < 5  # JPEG noise; a digit on its side differs by far more


def test_mnist_digits_survive_the_round_trip_through_image_files(trained_model, mnist):
    """Real test digits, enlarged 10x, drawn dark on white at random places on a larger canvas and saved
    as JPEG, come back nearly as they were and get the same predictions."""
    originals, rng, read_back = mnist.test_images[:300], np.random.default_rng(0), []
    for digit in originals:
        enlarged = Image.fromarray(255 - digit[0].numpy()).resize((280, 280), Image.BICUBIC)
        page = Image.new("RGB", (500, 420), "white")
        page.paste(enlarged, (int(rng.integers(0, 220)), int(rng.integers(0, 140))))
        file = io.BytesIO()
        page.save(file, "JPEG", quality=90)
        read_back.append(to_mnist(Image.open(file)))
    read_back = torch.stack(read_back)
    assert (read_back.float() - originals.float()).abs().mean() < 10  # of 255; 6.2 when measured
    with torch.no_grad():
        agreement = (trained_model(normalize(read_back)).argmax(1)
                     == trained_model(normalize(originals)).argmax(1)).double().mean().item()
    assert agreement >= 0.98  # 99.6-99.8% when measured on 500 digits


def test_bad_image_files_are_one_line_errors_and_the_good_ones_still_read(one_epoch_run, tmp_path):
    draw(1).save(tmp_path / "good.png")
    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "good.png").read_bytes()[:120])
    Image.new("RGB", (64, 64), "white").save(tmp_path / "blank.png")
    (tmp_path / "folder.png").mkdir()
    Image.new("1", (13_000, 13_000)).save(tmp_path / "169mp.png")  # 26 KB on disk; over 4.5 GB once read
    Image.new("1", (14_000, 14_000)).save(tmp_path / "196mp.png")  # where Pillow itself refuses
    nan = np.zeros((60, 60), np.float32)
    nan[20:40, 28:32], nan[5, 5] = 1.0, np.nan
    Image.fromarray(nan, mode="F").save(tmp_path / "nan.tif")
    bad = {"missing.png": "no such file", "text.png": "not an image file", "empty.png": "not an image file",
           "truncated.png": "truncated.png: ", "blank.png": "no digit found", "folder.png": "a folder",
           "169mp.png": "13,000 x 13,000 pixels, more than a digit's picture needs (at most 50 megapixels)",
           "196mp.png": "far more pixels than a digit's picture needs", "nan.tif": "not numbers: nan or infinite"}
    result = run_in_process("evaluate.py", str(one_epoch_run[1]), "--image", str(tmp_path / "good.png"),
                            *(str(tmp_path / name) for name in bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"good\.png: 1 \(", result.stdout)
    errors = result.stderr.splitlines()
    assert len(errors) == len(bad)
    for line, (name, message) in zip(errors, bad.items()):
        assert line.startswith(f"error: {tmp_path / name}") and message in line, line


@pytest.mark.filterwarnings("ignore:IM image format is deprecated")  # in saving it; reading is ours to test
def test_every_pixel_mode_reads_and_a_format_without_its_decoder_is_named_so(one_epoch_run, tmp_path):
    """Lightness-and-colour (LAB), 16-bit and float greyscale read as the same digit as the PNG; Pillow's own IM
    format is not "damaged"; EPS needs Ghostscript: without it the line says so, and the files after it read."""
    seven = draw(7).convert("L")
    seven.save(tmp_path / "seven.png")
    grey = Image.new("L", seven.size, 128)  # colour bands of a neutral grey
    Image.merge("LAB", (seven, grey, grey)).save(tmp_path / "lab.tif")
    Image.fromarray(np.asarray(seven, np.uint16) * 200).save(tmp_path / "sixteen.tif")
    Image.fromarray(np.asarray(seven, np.float32) * 1e6, mode="F").save(tmp_path / "float.tif")
    seven.save(tmp_path / "seven.im")
    seven.save(tmp_path / "seven.eps")
    names = ["lab.tif", "sixteen.tif", "float.tif", "seven.im", "seven.eps", "seven.png"]
    result = run_in_process("evaluate.py", str(one_epoch_run[1]), "--image", *(str(tmp_path / name) for name in names))
    assert "Traceback" not in result.stderr
    read = dict(re.findall(r"^(.*): (\d) \(", result.stdout, re.MULTILINE))
    assert {str(tmp_path / name) for name in names} - set(read) <= {str(tmp_path / "seven.eps")}
    assert len(set(read.values())) == 1, read
    if shutil.which("gs") is None:  # Ghostscript is not installed
        assert result.returncode == 1
        assert result.stderr == (f"error: {tmp_path / 'seven.eps'}: EPS, a format this machine cannot read "
                                 "(Unable to locate Ghostscript on paths): save it as PNG or JPEG\n")
    for name in names[:4]:
        assert (load_digit(tmp_path / name).float() - load_digit(tmp_path / "seven.png").float()).abs().max() <= 1


def artifact(path, members):
    """A zip as GitHub's run page downloads an artifact: (name, bytes, date_time) members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, when in members:
            archive.writestr(zipfile.ZipInfo(name, when), data, zipfile.ZIP_DEFLATED)
    return path


def test_reads_the_checkpoint_inside_a_downloaded_artifact(one_epoch_run, tmp_path):
    checkpoint = one_epoch_run[1]
    zipped = artifact(tmp_path / "mnist-model-12.zip",
                      [(checkpoint.name, checkpoint.read_bytes(), (2026, 11, 24, 9, 0, 0))])
    result = run_in_process("evaluate.py", str(zipped))
    assert result.returncode == 0, result.stderr
    assert f"checkpoint: {zipped}: {checkpoint.name} (HybridCNN" in result.stdout and ": matches" in result.stdout
    draw(7).save(tmp_path / "seven.png")
    result = run_in_process("evaluate.py", str(zipped), "--image", str(tmp_path / "seven.png"))
    assert result.returncode == 0 and re.search(r"seven\.png: \d \(", result.stdout), result.stderr
    assert sorted(tmp_path.iterdir()) == [zipped, tmp_path / "seven.png"]  # nothing extracted next to it


def test_of_several_checkpoints_in_a_zip_the_newest_is_read_and_named(one_epoch_run, tmp_path, capsys):
    good = one_epoch_run[1].read_bytes()
    state = torch.load(one_epoch_run[1], weights_only=True)
    older = io.BytesIO()
    torch.save(state | {"seed": 12}, older)  # the seed printed tells which one was read
    zipped = artifact(tmp_path / "two.zip", [
        ("models/model_cpu_20261101_000000.pth", older.getvalue(), (2026, 11, 1, 0, 0, 0)),
        ("models/model_cpu_20261124_000000.pth", good, (2026, 11, 24, 0, 0, 0)),
        ("models/.partial-x.pth", b"", (2026, 11, 25, 0, 0, 0))])
    draw(1).save(tmp_path / "one.png")
    assert run_cli(evaluate.main, [str(zipped), "--image", str(tmp_path / "one.png")]) == 0
    out = capsys.readouterr().out
    assert f"{zipped} holds 2 checkpoints: reading the newest, models/model_cpu_20261124_000000.pth" in out
    assert f"checkpoint: {zipped}: model_cpu_20261124_000000.pth (HybridCNN, {state['parameters']:,} parameters, " \
        f"1 epoch(s), seed {state['seed']}," in out


def test_bad_zips_are_one_line_errors(one_epoch_run, tmp_path, capsys):
    good = one_epoch_run[1].read_bytes()
    cases = {
        "none.zip": (artifact(tmp_path / "none.zip", [("README.txt", b"hello", (2026, 1, 1, 0, 0, 0))]),
                     "a zip archive with no checkpoint (.pth) in it"),
        "bomb.zip": (artifact(tmp_path / "bomb.zip", [("model.pth", bytes(200 * 2**20), (2026, 1, 1, 0, 0, 0))]),
                     "refused: model.pth would unpack to 209,715,200 bytes"),
    }
    flipped = bytearray(artifact(tmp_path / "flipped.zip", [("model.pth", good, (2026, 1, 1, 0, 0, 0))]).read_bytes())
    flipped[len(flipped) // 3] ^= 0xFF  # inside the compressed checkpoint: its CRC no longer holds
    (tmp_path / "flipped.zip").write_bytes(flipped)
    cases["flipped.zip"] = (tmp_path / "flipped.zip", "a damaged zip archive")
    truncated = artifact(tmp_path / "whole.zip", [("model.pth", good, (2026, 1, 1, 0, 0, 0))]).read_bytes()[:-100]
    (tmp_path / "truncated.zip").write_bytes(truncated)
    cases["truncated.zip"] = (tmp_path / "truncated.zip", "not a readable checkpoint")
    for name, (path, message) in cases.items():
        assert run_cli(evaluate.main, [str(path)]) == 1, name
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, (name, error)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "100.5", "high"])
def test_a_minimum_accuracy_must_be_a_percentage(value, capsys):
    assert_bad_flags_rejected(evaluate.main, ["models", "--min-accuracy", value], "--min-accuracy: ", capsys)


@pytest.mark.parametrize("argv, message", [
    (["--list", "--image", "x.png"], "--image: not read with --list, which lists the checkpoints alone"),
    (["--list", "--device", "cpu", "--data-dir", "data"], "--data-dir, --device: not read with --list"),
    (["--image", "x.png", "--min-accuracy", "99"], "--min-accuracy: not read with --image, which reads the images"),
    (["--image", "x.png", "--data-dir", "data"], "--data-dir: not read with --image"),
    (["--artifact", "mnist-model"], "--artifact needs --summary"),
])
def test_a_flag_the_mode_does_not_read_is_refused_not_ignored(argv, message, capsys):
    """Before, `--image x.png --min-accuracy 99` read the image and exited 0 whatever the bar."""
    assert_bad_flags_rejected(evaluate.main, ["models", *argv], message, capsys)


def test_a_summary_in_a_missing_folder_is_said_before_the_evaluation(tmp_path, capsys):
    summary = tmp_path / "no such folder" / "summary.md"
    assert run_cli(evaluate.main, [str(tmp_path), "--min-accuracy", "95", "--summary", str(summary)]) == 1
    said = capsys.readouterr()
    assert said.out == "" and said.err == f"error: --summary {summary}: there is no folder {summary.parent} to write it in\n"


@pytest.mark.parametrize("name", ["nan_accuracy", "inf_accuracy", "negative_epochs", "split_7", "wrong_count"])
def test_checkpoints_that_resume_refuses_evaluate_refuses_too(one_epoch_run, tmp_path, name, capsys):
    from test_train import DAMAGED

    state = torch.load(one_epoch_run[1], weights_only=True)
    damage = DAMAGED.get(name, {"parameters": 17_000})
    torch.save(state | damage, tmp_path / f"{name}.pth")
    assert run_cli(evaluate.main, [str(tmp_path / f"{name}.pth")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and next(iter(damage)) in error and "Traceback" not in error
    assert run_cli(train.main, ["--resume", str(tmp_path / f"{name}.pth"), "--epochs", "2", "--quiet",
                                "--models-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == error  # the same one line from both readers


def test_a_folder_s_newest_checkpoint_passes_over_hidden_files_and_broken_symlinks(one_epoch_run, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    good = folder / "model_cpu_20260101_000000.pth"
    good.write_bytes(one_epoch_run[1].read_bytes())
    os.utime(good, (1, 1))  # older than everything below
    (folder / ".partial-host-1-0a1b2c3d.pth").write_bytes(b"")  # a run's leftover
    (folder / "._model.pth").write_bytes(b"\0" * 4096)  # macOS metadata on a USB stick
    (folder / "folder.pth").mkdir()
    (folder / "dangling.pth").symlink_to(tmp_path / "gone.pth")
    (folder / "loop.pth").symlink_to(folder / "loop.pth")
    draw(7).save(tmp_path / "seven.png")  # reading a digit: the checkpoint's line without a test-set evaluation
    result = run_in_process("evaluate.py", str(folder), "--image", str(tmp_path / "seven.png"))
    assert result.returncode == 0, result.stderr
    assert f"checkpoint: {good} (HybridCNN" in result.stdout
    assert sorted(result.stderr.splitlines()) == [
        f"note: passed over {folder / 'dangling.pth'}: a broken symlink (No such file or directory)",
        f"note: passed over {folder / 'loop.pth'}: a broken symlink (Too many levels of symbolic links)"]


def test_a_raw_pickle_and_a_compressed_giant_are_one_line_each(tmp_path):
    with open(tmp_path / "raw.pth", "wb") as file:
        pickle.dump({"model_state_dict": {}}, file, protocol=4)  # torch warns about protocol 4
    torch.save({"weights": torch.zeros(2**25)}, tmp_path / "plain.pth")
    with zipfile.ZipFile(tmp_path / "plain.pth") as source, \
            zipfile.ZipFile(tmp_path / "giant.pth", "w", zipfile.ZIP_DEFLATED) as giant:
        for member in source.infolist():  # 128 MB of zeros in 130 KB: torch would read it whole
            giant.writestr(member.filename, source.read(member))
    result = run_in_process("evaluate.py", str(tmp_path / "raw.pth"))
    assert (result.returncode, result.stderr) == (1, f"error: {tmp_path / 'raw.pth'}: not a readable checkpoint "
                                                     "(truncated, or not a PyTorch file)\n")
    result = run_in_process("evaluate.py", str(tmp_path / "giant.pth"))
    assert result.returncode == 1 and re.fullmatch(
        rf"error: {tmp_path / 'giant.pth'}: refused: it would unpack to 134,21\d,\d+ bytes, far more than a "
        r"checkpoint \(64 MB at most\)\n", result.stderr)
