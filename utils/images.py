"""Turn an ordinary image file of a handwritten digit into an MNIST digit.

MNIST digits were made this way (LeCun et al.): the digit is scaled, keeping its aspect ratio, to fit
a 20x20 box with anti-aliasing, then placed in a 28x28 field so that its centre of mass sits in the
middle: at pixel (14, 14), where the real test digits have theirs (mean 13.99, 14.00, std 0.3);
strokes are light on a dark background. `to_mnist` repeats those steps for any size and mode:
the background is read from the border, so a dark-on-light drawing is inverted; a transparent
background counts as background; strokes too thin to survive the downscaling are thickened first.
"""
import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.errors import UserError, shown
from utils.files import regular_file

BOX, FIELD = 20, 28
INK_THRESHOLD = 0.2  # of the strongest stroke: fainter pixels are paper texture, shadows, JPEG noise
STROKE = 0.1  # MNIST strokes are about 2 px wide in the 20 px box
WORKING_SIZE = 280  # larger digits are first shrunk (keeping every stroke) to at most this many pixels
MISSING_DECODER = ("not available", "Unable to locate Ghostscript", "cannot find loader")  # what Pillow says then
MAX_PIXELS = 50_000_000  # checked from the header, before anything is decoded. Reading such a picture, in any
#                          mode, stays within 1.5 GB at the peak, this process included (bench/image_memory.py)


def load_digit(path, data: bytes | None = None) -> torch.Tensor:
    """Read an image file (or `data`, a file's bytes, such as an upload: `path` then only names it) and return it
    as a (1, 28, 28) uint8 MNIST-style digit. Every way the file can fail, from opening it to the digit's last
    pixel, is a one-line UserError that says which way."""
    if data is None:
        regular_file(path, missing=f"{path}: no such file", folder=f"{path}: a folder, not an image file")
    kind, file_format = "image", "this format"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # what Pillow warns about in a damaged file ends the reading, in one line
            warnings.simplefilter("ignore", DeprecationWarning)  # about Pillow's future, not about the file
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # from 89 megapixels: ours is below
            with Image.open(path if data is None else io.BytesIO(data)) as image:  # reads the header alone
                kind, file_format = f"{image.format} image", image.format
                if image.width * image.height > MAX_PIXELS:
                    raise UserError(f"{path}: {image.width:,} x {image.height:,} pixels, more than a digit's picture "
                                    f"needs (at most {MAX_PIXELS // 10**6} megapixels): scale it down or crop it first")
                image = ImageOps.exif_transpose(image)  # photos: apply the camera's rotation
                image.load()
        return to_mnist(image, name=path)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not an image file") from None
    except Image.DecompressionBombError:  # Pillow refuses over 179 megapixels before we can ask
        raise UserError(f"{path}: far more pixels than a digit's picture needs (at most {MAX_PIXELS // 10**6} "
                        "megapixels): scale it down or crop it first") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except MemoryError:
        raise UserError(f"{path}: not enough memory to read this {kind}") from None
    except Exception as error:  # damaged data: each decoder raises its own (OSError, SyntaxError, RuntimeError..)
        if any(sign in str(error) for sign in MISSING_DECODER):
            raise UserError(f"{path}: {file_format}, a format this machine cannot read ({shown(error, 200)}): "
                            "save it as PNG or JPEG") from None
        if "conversion from" in str(error):
            raise UserError(f"{path}: {kind} in a pixel mode this program cannot read ({shown(error, 200)}): "
                            "save it as PNG or JPEG") from None
        raise UserError(f"{path}: damaged {kind} ({shown(error, 200) or type(error).__name__})") from None


def greyscale(image: Image.Image) -> np.ndarray:
    """The image's brightness as float32 (the largest array a digit needs; worked on in place from here):
    16-bit, 32-bit and float greyscale keep their range; other modes go through Pillow's 8-bit greyscale."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = np.array(image, dtype=np.float32)  # a copy of its own: Pillow's bytes are read-only
        largest = max(abs(float(gray.min())), abs(float(gray.max())))
        if largest > 0:
            gray /= largest  # within [-1, 1]: differences of float pixels cannot overflow
        return gray
    if image.mode == "LAB":  # Pillow converts it to nothing grey; its first band is the lightness
        return np.array(image.getchannel("L"), dtype=np.float32)
    return np.array(image.convert("L"), dtype=np.float32)


def ink_of(image: Image.Image) -> np.ndarray:
    """Stroke strength in [0, 1] per pixel: 1 is the strongest stroke, 0 the background."""
    if "A" in image.getbands() or "transparency" in image.info:
        alpha = image.getchannel("A") if "A" in image.getbands() else image.convert("RGBA").getchannel("A")
        alpha = np.array(alpha, dtype=np.float32)
        if alpha.min() < alpha.max():  # a drawing on a transparent canvas: opacity is the ink
            alpha /= alpha.max()
            return alpha
        del alpha
    ink = greyscale(image)
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    ink -= np.median(border)  # the background
    np.abs(ink, out=ink)  # light-on-dark and dark-on-light alike
    strongest = ink.max()
    if strongest > 0:
        ink /= strongest
    return ink


def to_mnist(image: Image.Image, name="image") -> torch.Tensor:
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():  # floating-point TIFFs can hold nan, inf
        raise UserError(f"{name}: damaged image (pixels that are not numbers: nan or infinite)")
    ink = ink_of(image)
    ink[ink < INK_THRESHOLD] = 0
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))  # not a pair per inked pixel
    if len(rows) == 0:
        raise UserError(f"{name}: no digit found (the image is blank)")
    crop = ink[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    ink = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
    if max(ink.shape) > WORKING_SIZE:  # max-pooling keeps a thin stroke where averaging would fade it
        step = -(-max(ink.shape) // WORKING_SIZE)
        ink = F.max_pool2d(ink, step, step, ceil_mode=True)
    height, width = ink.shape[2:]

    # A thin pen on a large canvas would fade to a faint 1 px line: widen the strokes (a max filter)
    # until they are about as wide, relative to the digit, as MNIST's. Width of a stroke ~ area / length,
    # and its length ~ half the number of edge pixels.
    mask = F.pad((ink > 0).float(), [1] * 4)  # beyond the crop is background: a stroke along it has an edge there
    edge = mask + F.max_pool2d(-mask, 3, 1, 1)  # 1 where an inked pixel has a background neighbour
    stroke_width = 2 * mask.sum().item() / max(edge.sum().item(), 1)
    wanted = STROKE * max(height, width)
    if stroke_width < wanted:
        grow = int(round(wanted - stroke_width)) // 2 * 2 + 1  # odd kernel: widens by `grow - 1` pixels
        ink = F.max_pool2d(F.pad(ink, [grow // 2] * 4), grow, 1, grow // 2)  # room to widen past the crop
        height, width = ink.shape[2:]
    scale = BOX / max(height, width)

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    ink = Image.fromarray(np.uint8(ink[0, 0].numpy() * 255))
    box = np.asarray(ink.resize(size, Image.LANCZOS), dtype=np.float32)
    if box.max() == 0:
        raise UserError(f"{name}: no digit found (its strokes vanish at 28x28)")
    box = box / box.max() * 255  # the faintest downscaled pen still reaches full strength

    ys, xs = np.indices(box.shape)
    mass = box.sum()
    centre_y, centre_x = (ys * box).sum() / mass, (xs * box).sum() / mass
    top = int(np.clip(round(FIELD / 2 - centre_y), 0, FIELD - box.shape[0]))
    left = int(np.clip(round(FIELD / 2 - centre_x), 0, FIELD - box.shape[1]))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top:top + box.shape[0], left:left + box.shape[1]] = box
    return torch.from_numpy(np.round(field).astype(np.uint8))[None]
