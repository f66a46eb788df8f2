"""Fuzzing the readers of every file a user hands this project: checkpoints (evaluate.py's loader and
train.py --resume) and digit images. Each case mutates a real file (truncated, bytes
flipped, values of other types, shapes and dtypes, keys deleted or swapped, non-finite numbers, shared
references, cycles, nesting 200,000 deep, expanded tensors, finite values that overflow), draws what
the file is (a regular file, a FIFO, a symlink to /dev/zero, a folder holding it, a dangling symlink) and
what it is called (a plain name, one over 255 bytes, a path over 4,096 bytes, bytes that are not UTF-8,
control characters), and runs the reader: it must end in a result or in one UserError, never another
exception, within a time limit (a reader waiting on a FIFO is a failure), and the whole run must stay under
the memory bound.

    python bench/fuzz.py --cases 20000 --seed 1   # a long run: every failure, the outcomes, the peak memory
    python bench/fuzz.py --cases 1000               # what tests/test_fuzz.py runs (seed 0), some 10 s

Case k of seed s is the same file on every run: `--seed s --only k` repeats it alone.
"""
import argparse
import errno
import io
import math
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.errors import UserError  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import train  # noqa: E402
from model.checkpoint import load_model  # noqa: E402
from utils.checkpoint import checkpoint_file  # noqa: E402
from utils.data import MNIST, load_mnist  # noqa: E402
from utils.images import load_digit  # noqa: E402
from utils.plotting import training_curves  # noqa: E402

MEMORY_BOUND_MB = 2048
TIME_LIMIT = 20  # seconds a case may take: a reader waiting on a FIFO or reading /dev/zero is a failure


# --- mutations ----------------------------------------------------------------------------------

def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    kind = rng.choice(["truncate", "flip", "flip many", "insert", "delete", "zero run"])
    if kind == "truncate":
        return bytes(data[:rng.randrange(len(data))])
    if kind == "flip":
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "flip many":
        for _ in range(rng.randint(2, 64)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "insert":
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        at = rng.randrange(len(data))
        del data[at:at + rng.randint(1, 16)]
    else:
        at = rng.randrange(len(data))
        data[at:at + rng.randint(1, 4096)] = bytes(min(4096, len(data) - at))
    return bytes(data)


def strange_value(rng: random.Random, like=None):
    """A value of another type, shape, dtype or size than `like`, or a non-finite or out-of-range number."""
    choices = [None, True, -1, 0, 2**63, 3.5, math.nan, math.inf, -math.inf, "text", b"bytes", [], {}, [1, "a"],
               {"last_epoch": -1}, torch.tensor(math.nan), torch.zeros(0), torch.zeros(3, 3, dtype=torch.int64),
               torch.full((10,), math.inf), torch.zeros(2**12, dtype=torch.uint8)]
    if isinstance(like, torch.Tensor) and like.dim() > 0:
        choices += [like.double(), like.half(), like.to(torch.int32), like.flatten(), like[..., :1],
                    like.unsqueeze(0), like * math.nan, like.t() if like.dim() == 2 else like.mT if like.dim() > 2
                    else like.reshape(-1, 1), torch.zeros(like.numel() + 1).expand(3, -1)]
    if isinstance(like, (int, float)) and not isinstance(like, bool):
        choices += [-like, like * 1000, -like - 1, float(like), str(like)]
    return rng.choice(choices)


def structural(rng: random.Random, like):
    """What no change of one value makes (found by the fourth audit): references shared 16**4 times, a list that
    holds itself, a tensor that is an expanded view, finite numbers that overflow the forward pass."""
    shared, loop = [0], []
    for _ in range(4):
        shared = [shared] * 16
    loop.append(loop)
    choices = [shared, loop, torch.zeros(1).expand(2**40)]
    if isinstance(like, torch.Tensor) and like.is_floating_point() and like.numel() > 1:
        choices += [torch.zeros(1, dtype=like.dtype).expand(like.shape), torch.full_like(like, 3e38), like * 1e30]
    return rng.choice(choices)


def with_opcodes(state: dict, key, opcodes: bytes) -> bytes:
    """torch.save's bytes of `state`, the value of `key` whatever raw pickle `opcodes` build: what no pickler
    writes (nesting deeper than Python's recursion limit, a million empty sets in a few bytes each)."""
    marker, buffer, output = f"replaced {key}".encode(), io.BytesIO(), io.BytesIO()
    torch.save(state | {key: marker.decode()}, buffer)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(output, "w") as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename.endswith("data.pkl"):  # BINUNICODE: "X", the text's length in 4 bytes, the text
                data = data.replace(b"X" + len(marker).to_bytes(4, "little") + marker, opcodes)
            target.writestr(member.filename, data)
    return output.getvalue()


def deep(levels: int) -> bytes:
    """Opcodes of a list nested `levels` deep: EMPTY_LIST `levels` times, then APPEND each into the one below."""
    return b"]" * levels + b"a" * (levels - 1)


def paths_in(value, prefix=()):
    """Every key path into nested dicts and lists."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in items:
        found.append(prefix + (key,))
        found += paths_in(item, prefix + (key,))
    return found


def mutate_state(state: dict, rng: random.Random) -> dict:
    """Change the checkpoint's values: 1-3 of delete, replace, swap, reshape."""
    state = _copy(state)
    for _ in range(rng.randint(1, 3)):
        paths = paths_in(state)
        path = rng.choice(paths)
        parent = state
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        kind = rng.choice(["delete", "replace", "replace", "swap"])
        if kind == "delete":
            del parent[key]
        elif kind == "replace":
            parent[key] = strange_value(rng, parent[key])
        else:
            other = rng.choice(paths)
            other_parent = state
            try:
                for step in other[:-1]:
                    other_parent = other_parent[step]
                parent[key], other_parent[other[-1]] = other_parent[other[-1]], parent[key]
            except (KeyError, IndexError, TypeError):
                pass  # the other path went away with an earlier change
    return state


def _copy(value):
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value.clone() if isinstance(value, torch.Tensor) else value


# --- the readers ----------------------------------------------------------------------------------

class Target:
    def __init__(self, folder: Path, data: MNIST):
        self.folder = folder
        self.tiny = MNIST(data.train_images[:240], data.train_labels[:240],
                          data.test_images[:100], data.test_labels[:100])
        self.models = folder / "models"
        _, self.checkpoint, _ = train.train(train.Config(quiet=True, models_dir=str(self.models)), data=self.tiny,
                                            log=lambda message: None)
        self.state = torch.load(self.checkpoint, weights_only=True)
        schedule = self.state["schedule_state"]  # as if it were epoch 1 of 2: a resume carries that run on
        self.interrupted = self.state | {"planned_epochs": 2, "schedule_state": {
            "last_epoch": schedule["last_epoch"], "total_steps": 2 * schedule["last_epoch"]}}
        self.images = {}
        digit = Image.fromarray(255 - data.test_images[0, 0].numpy()).resize((112, 112))
        for suffix, mode in ((".png", "L"), (".jpg", "L"), (".bmp", "RGB"), (".gif", "P"), (".tiff", "F"),
                             (".webp", "RGB")):
            buffer = io.BytesIO()
            picture = digit.convert(mode) if mode != "F" else Image.fromarray(np.asarray(digit, np.float32), "F")
            picture.save(buffer, format=Image.registered_extensions()[suffix])
            self.images[suffix] = buffer.getvalue()

    KINDS = ["checkpoint bytes", "checkpoint values", "checkpoint values", "resume", "resume", "image"]

    def contents(self, kind: str, rng: random.Random, intact: bool) -> tuple[bytes, str]:
        """A file for this reader, mutated unless `intact`: (its bytes, its suffix)."""
        if kind == "checkpoint bytes":
            data = self.checkpoint.read_bytes()
            return (data if intact else mutate_bytes(data, rng)), ".pth"
        if kind in ("checkpoint values", "resume"):
            base = rng.choice([self.state, self.interrupted]) if kind == "resume" else self.state
            state = base if intact else mutate_state(base, rng)
            if not intact and rng.random() < 0.1:
                return with_opcodes(state, rng.choice(sorted(state)), deep(rng.choice([1000, 200_000]))), ".pth"
            if not intact and rng.random() < 0.3:  # last: the walks above would not end on a cycle
                path = rng.choice(paths_in(state))
                parent = state
                for key in path[:-1]:
                    parent = parent[key]
                parent[path[-1]] = structural(rng, parent[path[-1]])
            buffer = io.BytesIO()
            torch.save(state, buffer)
            return buffer.getvalue(), ".pth"
        suffix = rng.choice(sorted(self.images))
        return (self.images[suffix] if intact else mutate_bytes(self.images[suffix], rng)), suffix

    def read(self, kind: str, path: Path, curves: bool) -> None:
        """Read `path` as the project reads a user's file of this kind; a resumed run's history is drawn too
        where `curves` (where it was mutated: an intact one draws as every run's does)."""
        if kind in ("checkpoint bytes", "checkpoint values"):  # as evaluate.py: a .pth, a folder's newest, a zip
            with checkpoint_file(path, log=lambda message: None) as (file, name):
                load_model(file, name=name)
        elif kind == "resume":  # a run of 2 epochs from the mutated one of 1 (tiny data: 3 steps)
            config = train.Config(quiet=True, epochs=2, resume=str(path), models_dir=str(self.models))
            try:
                _, _, history = train.train(config, data=self.tiny, log=lambda message: None)
                if curves:
                    training_curves(history, len(self.tiny.train_labels), self.folder / "pictures")  # as the pipeline
            finally:
                for written in self.models.glob("*.pth"):
                    if written != self.checkpoint:
                        written.unlink()
        else:
            load_digit(path)


# --- what the file is and what it is called ---------------------------------------------------------

FILE_KINDS = ["regular file"] * 5 + ["FIFO", "symlink to /dev/zero", "folder", "dangling symlink"]
NAMES = ["plain name"] * 5 + ["name over 255 bytes", "path over 4,096 bytes", "name not UTF-8",
                              "name with control characters"]


def named(folder: Path, number: int, name: str, suffix: str) -> Path:
    """Where case `number` puts its file: every name starts with "case", so what a case leaves is found."""
    if name == "path over 4,096 bytes":  # each part within 255 bytes, the whole over the system's limit
        return folder.joinpath(f"case{number}", *["d" * 250] * 17, f"digit{suffix}")
    stem = {"plain name": "", "name over 255 bytes": "x" * 256, "name not UTF-8": "-\udcff\udcfe",  # bytes ff fe
            "name with control characters": "\n\x1b[31m\t\r"}[name]
    return folder / f"case{number}{stem}{suffix}"


def place(path: Path, file_kind: str, data: bytes) -> None:
    """Make `path` that kind of file; a folder holds the file as a checkpoint folder would. A name the system
    refuses (too long; not UTF-8 where names must be) leaves nothing: the reader is handed the name alone."""
    try:
        if file_kind == "regular file":
            path.write_bytes(data)
        elif file_kind == "FIFO":
            os.mkfifo(path)
        elif file_kind == "symlink to /dev/zero":
            path.symlink_to("/dev/zero")
        elif file_kind == "folder":
            path.mkdir()
            (path / "model_cpu_20260101_000000.pth").write_bytes(data)
        else:
            path.symlink_to(path.parent / "nowhere")
    except OSError as error:
        if error.errno not in (errno.ENAMETOOLONG, errno.EILSEQ):
            raise


def remove_cases(folder: Path) -> None:
    for leftover in folder.glob("case*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()


class Hang(BaseException):
    """A case past its time limit (a BaseException: no `except Exception` in the readers can hide it)."""


def over_time(signal_number, frame):
    raise Hang()


def peak_memory_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, help="run case K alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_mnist(log=lambda message: None)
    started, outcomes, failures = time.perf_counter(), {}, []
    signal.signal(signal.SIGALRM, over_time)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        target = Target(folder, data)
        for number in [args.only] if args.only is not None else range(args.cases):
            rng = random.Random(f"{args.seed}/{number}")
            kind, file_kind, name = rng.choice(Target.KINDS), rng.choice(FILE_KINDS), rng.choice(NAMES)
            plain = (file_kind, name) == ("regular file", "plain name")
            intact = not plain and rng.random() < 0.5  # so that unusual names and kinds are also read whole
            data, suffix = target.contents(kind, rng, intact)
            path = named(folder, number, name, suffix)
            try:
                signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
                place(path, file_kind, data)
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # a warning would be a second line on the user's screen
                    target.read(kind, path, curves=not intact)
                result = "read"
            except UserError as error:
                result = "one line" if "\n" not in str(error) else "several lines"
                if result != "one line":
                    failures.append((number, kind, file_kind, name, str(error)))
            except Hang:
                result = f"over {TIME_LIMIT} s"
                failures.append((number, kind, file_kind, name, f"still running after {TIME_LIMIT} s: a hang"))
            except Exception as error:  # noqa: BLE001: what the fuzzing is for
                result = type(error).__name__
                failures.append((number, kind, file_kind, name, "".join(traceback.format_exception(error))[-1500:]))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            for dimension in (kind, file_kind, name):
                outcomes[dimension, result] = outcomes.get((dimension, result), 0) + 1
            remove_cases(folder)
    peak = peak_memory_mb()
    for number, kind, file_kind, name, text in failures:
        print(f"FAILED case {number} ({kind}, {file_kind}, {name}): repeat with --seed {args.seed} --only {number}\n"
              f"{text}\n")
    for title, dimension in (("readers", Target.KINDS), ("file kinds", FILE_KINDS), ("names", NAMES)):
        print(f"{title}:")
        for kind in dict.fromkeys(dimension):
            counts = {result: count for (of, result), count in sorted(outcomes.items()) if of == kind}
            print(f"  {kind}: " + (", ".join(f"{count} {result}" for result, count in counts.items()) or "no case"))
    cases = sum(count for (of, _), count in outcomes.items() if of in Target.KINDS)
    print(f"{cases} cases (seed {args.seed}) in {time.perf_counter() - started:.0f} s; "
          f"peak memory {peak:.0f} MB (bound {MEMORY_BOUND_MB} MB); {len(failures)} failure(s)")
    return 1 if failures or peak > MEMORY_BOUND_MB else 0


if __name__ == "__main__":
    sys.exit(main())
