"""Memory benchmark: the peak memory of `python evaluate.py CHECKPOINT --image FILE`, a fresh process each time
as a user runs it, for a picture just under the 50-megapixel limit (7,000 x 7,000) in every pixel mode a
digit's picture comes in: 1-bit, 8-bit grey, palette with transparency, grey with alpha, RGB, RGBA, CMYK,
16-bit and 32-bit grey, float, and a camera JPEG that must be turned upright first. The digit, a 0, spans the
whole picture: its crop is as large as a crop can be. Prints each peak and checks it against the bound
that utils/images.py states.

    python bench/image_memory.py        # under a minute on a 2-core CPU; exit 1 if a peak is over the bound
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import train  # noqa: E402
from bench.peak import run_measured  # noqa: E402
from utils.data import MNIST, load_mnist  # noqa: E402
from utils.images import MAX_PIXELS  # noqa: E402

BOUND_MB = 1536  # "about 1.5 GB at the peak, this process included" (utils/images.py)
SIDE = 7_000  # 49 megapixels
CASES = [  # (name, Pillow mode, format, suffix)
    ("1-bit", "1", "PNG", ".png"), ("grey", "L", "PNG", ".png"), ("palette, transparent", "P", "PNG", ".png"),
    ("grey + alpha", "LA", "PNG", ".png"), ("RGB", "RGB", "PNG", ".png"), ("RGBA", "RGBA", "PNG", ".png"),
    ("CMYK", "CMYK", "TIFF", ".tif"), ("16-bit grey", "I;16", "PNG", ".png"), ("32-bit grey", "I", "TIFF", ".tif"),
    ("float", "F", "TIFF", ".tif"), ("camera JPEG, rotated", "RGB", "JPEG", ".jpg")]


def picture(mode: str, fmt: str, path: Path) -> None:
    """A dark 0 on white across the whole picture, in `mode`; the JPEG lies on its side with EXIF saying so."""
    canvas = Image.new("L", (SIDE, SIDE), 255)
    ImageDraw.Draw(canvas).ellipse([500, 300, SIDE - 500, SIDE - 300], outline=0, width=400)
    if mode in ("I;16", "I", "F"):
        scale, dtype = {"I;16": (257, np.uint16), "I": (65_537, np.int32), "F": (1 / 255, np.float32)}[mode]
        image = Image.fromarray((np.asarray(canvas, dtype) * dtype(scale)).astype(dtype))
    elif mode in ("LA", "P"):  # the ink is opaque, the paper transparent
        image = canvas.convert("LA")
        image.putalpha(canvas.point(lambda value: 255 - value))
        if mode == "P":
            image = canvas.convert("P")
            image.info["transparency"] = 255
    else:
        image = canvas.convert(mode)
    if fmt == "JPEG":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotated 90 degrees clockwise
        image.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
    else:
        image.save(path, format=fmt, **({"transparency": 255} if mode == "P" else {}))


def peak_of(command) -> tuple[int, float, str, float]:
    """Exit status, peak resident memory (MB) of the process, its output, seconds."""
    started = time.perf_counter()
    result, peak = run_measured(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return result.returncode, peak, result.stdout.decode(errors="replace"), time.perf_counter() - started


def main():
    assert SIDE * SIDE <= MAX_PIXELS
    data = load_mnist(log=lambda message: None)
    tiny = MNIST(data.train_images[:500], data.train_labels[:500], data.test_images[:100], data.test_labels[:100])
    worst, failed = 0.0, False
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        _, checkpoint, _ = train.train(train.Config(quiet=True, models_dir=str(folder)), data=tiny,
                                       log=lambda message: None)
        _, baseline, _, _ = peak_of([sys.executable, "evaluate.py", str(checkpoint), "--image", "/dev/null"])
        print(f"{SIDE:,} x {SIDE:,} pixels; evaluate.py with no picture read peaks at {baseline:.0f} MB")
        print(f"{'picture':<22} {'mode':<5} {'file':>9} {'peak':>8} {'time':>6}")
        for name, mode, fmt, suffix in CASES:
            path = folder / f"digit{suffix}"
            picture(mode, fmt, path)
            code, peak, text, seconds = peak_of([sys.executable, "evaluate.py", str(checkpoint), "--image", str(path)])
            read = code == 0 and text.splitlines()[-1].startswith(f"{path}: ")
            print(f"{name:<22} {mode:<5} {path.stat().st_size / 2**20:7.1f}MB {peak:6.0f}MB {seconds:5.1f}s"
                  + ("" if read else f"  NOT READ: {text.strip().splitlines()[-1]}"))
            worst, failed = max(worst, peak), failed or not read
            path.unlink()
    print(f"the largest peak: {worst:.0f} MB (bound {BOUND_MB} MB)")
    return 1 if failed or worst > BOUND_MB else 0


if __name__ == "__main__":
    sys.exit(main())
