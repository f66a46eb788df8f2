"""Checkpoints: plain types and CPU tensors only (so `torch.load(path, weights_only=True)` reads them on any
machine, one without a GPU too), written atomically (temporary file, then rename) under names that never
collide."""
import io
import math
import shutil
import stat
import sys
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory

import torch

from utils.errors import UserError, shown
from utils.flags import MAX_BATCH
from utils.files import is_ours, kind_of, regular_file, replace_atomically, reporting, timestamp, write_new

MAX_BYTES = 64 * 2**20  # a checkpoint of this project unpacks to about 170 KB: one declaring more is refused
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # what weights and optimizer state may be
COUNTERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)  # BatchNorm's num_batches_tracked
REQUIRED = {"architecture": str, "model_state_dict": dict, "optimizer_state_dict": dict, "placement": dict,
            "epochs": int, "final_test_accuracy": (float, int), "parameters": int, "seed": int}


def on_cpu(value):
    """A copy of `value` (dicts, lists and tuples of tensors and plain data) with every tensor on the CPU: a
    tensor saved from a GPU keeps its device, and loading it where there is none fails."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


def serialized(state: dict) -> bytes:
    """The checkpoint file's bytes (torch's zip format), every tensor moved to the CPU. Written from memory
    (about 170 KB), so a failing disk raises OSError with its reason rather than torch's RuntimeError."""
    buffer = io.BytesIO()
    torch.save(on_cpu(state), buffer)
    return buffer.getvalue()


def save_new(state: dict, models_dir, device_name: str) -> Path:
    """Write models_dir/model_<device>_<YYYYmmdd_HHMMSS>.pth; two runs in the same second get distinct names."""
    return write_new(models_dir, f"model_{device_name}_{timestamp()}", ".pth", serialized(state))


def save_over(state: dict, path: Path) -> Path:
    """Atomically replace this run's own checkpoint (written by save_new) with a newer state."""
    replace_atomically(path, serialized(state))
    return path


def load_checkpoint(path, name=None) -> dict:
    """Read a checkpoint with weights-only loading; every way it can be wrong is a one-line UserError (about
    `name`, when the file is a temporary copy of it)."""
    path, file = Path(name or path), Path(path)
    regular_file(file, missing=f"checkpoint {path} does not exist", folder=f"{path} is a folder, not a checkpoint file")
    try:
        with reporting("read", path), zipfile.ZipFile(file) as archive:  # torch's format is a zip: its directory
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError):  # the last: "zip file version 19.7"
        raise UserError(f"{path}: not a readable checkpoint (truncated, or not a PyTorch file)") from None
    if unpacked > MAX_BYTES:  # torch reads every record whole: a small, compressed file could fill the memory
        raise UserError(f"{path}: refused: it would unpack to {unpacked:,} bytes, far more than a checkpoint "
                        f"({MAX_BYTES // 2**20} MB at most)")
    try:
        with warnings.catch_warnings():  # torch warns about some files before refusing them: one line is ours
            warnings.simplefilter("ignore")
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types here: classify by what it says
        if "GLOBAL" in str(error):  # weights-only unpickling met a class or function: code, refused
            raise UserError(f"{path}: refused: it holds pickled code or objects that weights-only "
                            "loading does not allow (not a checkpoint written by this project)") from None
        raise UserError(f"{path}: not a readable checkpoint (truncated, or not a PyTorch file)") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        missing = REQUIRED if not isinstance(state, dict) else [key for key in REQUIRED if key not in state]
        raise UserError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(state[key], kind) or isinstance(state[key], bool)]
    if wrong:
        raise UserError(f"{path}: damaged checkpoint: {', '.join(wrong)} of the wrong type")
    damaged = [f"{key} {described(state[key])}" for key in damaged_values(state)]
    if damaged:
        raise UserError(f"{path}: damaged checkpoint: {'; '.join(damaged)[:300]}")
    problems = tensor_problems(state)
    if problems:
        more = f" (and {len(problems) - 1} more tensor(s))" if len(problems) > 1 else ""
        raise UserError(f"{path}: damaged checkpoint: {problems[0]}{more}")
    return state


def tensor_problems(state: dict) -> list[str]:
    """What is wrong with the weights, buffers and optimizer state, for every reader: torch.load gives back
    whatever tensors a file holds (NaN weights, sparse or meta tensors, integer ones), which would otherwise
    end in a prediction of nan%, a traceback, or a training run that diverges for no reason it could name."""
    weights = state["model_state_dict"]
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items()):
        return ["model_state_dict holds an entry that is not a layer's name and a tensor"]
    found = []
    for where, tensor in [*tensors_in(weights, "model_state_dict"),
                          *tensors_in(state["optimizer_state_dict"], "optimizer_state_dict")]:
        problem = tensor_problem(tensor)
        if problem:
            found.append(f"{shown(where, 100)} is {problem}")
    return found


def tensors_in(value, where: str):
    """(where, tensor) for every tensor in nested dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from tensors_in(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from tensors_in(item, f"{where}[{index}]")


def tensor_problem(tensor: torch.Tensor) -> str | None:
    """None for what a run saves: dense numbers in memory, floating-point and finite (or an integer counter,
    such as BatchNorm's num_batches_tracked); else what the tensor is instead."""
    if tensor.device.type != "cpu":  # loading maps every tensor that holds values to the CPU: "meta" holds none
        return f"a tensor without values (on the {tensor.device.type} device)"
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).removeprefix('torch.')} tensor, not a dense one"
    if tensor.dtype not in FLOATS:
        counter = tensor.dim() == 0 and tensor.dtype in COUNTERS
        return None if counter else f"a {str(tensor.dtype).removeprefix('torch.')} tensor, not a floating-point one"
    if not torch.isfinite(tensor).all():
        return "a tensor with NaN or infinite values"
    return None


def described(value) -> str:
    """A value, for a one-line message: a tensor by its type and shape, anything else by a short repr."""
    if isinstance(value, torch.Tensor):
        return f"(a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)})"
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_epoch_record(entry) -> bool:
    """One epoch of a checkpoint's history, as train.py writes it and the pipeline's training curves read it."""
    return (isinstance(entry, dict) and type(entry.get("epoch")) is int and entry["epoch"] >= 1
            and all(is_number(entry.get(key)) for key in ("train_loss", "train_accuracy", "test_loss",
                                                          "test_accuracy", "train_seconds"))
            and is_number(entry.get("train_cross_entropy", 0))  # recorded since 2026-12-03
            and isinstance(entry.get("curve"), list) and all(  # (seen, loss, accuracy[, cross-entropy])
                isinstance(point, (list, tuple)) and len(point) in (3, 4) and all(map(is_number, point))
                for point in entry["curve"]))


def damaged_values(state: dict) -> list[str]:
    """The keys whose values no run of this project writes: checked once, here, for every reader (evaluate.py,
    --resume, draw.py). Keys a resume reads are checked when present."""
    def is_byte_vector(value):
        return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1

    def is_random_state(value):  # what torch.get_rng_state() and Generator.get_state() return
        return is_byte_vector(value) and value.shape == torch.get_rng_state().shape

    def is_step(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    accuracy = state["final_test_accuracy"]
    checks = {"final_test_accuracy": math.isfinite(accuracy) and 0 <= accuracy <= 100,
              "epochs": state["epochs"] >= 1, "parameters": state["parameters"] >= 1}
    if "optimizer" in state:  # the optimizer's class name
        checks["optimizer"] = isinstance(state["optimizer"], str)
    if "planned_epochs" in state:
        checks["planned_epochs"] = is_step(state["planned_epochs"]) and state["planned_epochs"] >= 1
    for key in ("rng_state", "generator_state"):
        if key in state:
            checks[key] = is_random_state(state[key])
    if "device_rng_states" in state:  # {"cuda": [uint8 tensors]} and/or {"mps": uint8 tensor}
        states = state["device_rng_states"]
        checks["device_rng_states"] = isinstance(states, dict) and set(states) <= {"cuda", "mps"} and all(
            is_byte_vector(value) if kind == "mps" else isinstance(value, list) and all(map(is_byte_vector, value))
            for kind, value in states.items())
    if "schedule_state" in state:  # OneCycleLR's state_dict(): where it stands, of how many steps
        position = state["schedule_state"]
        step = position.get("last_epoch", position.get("step")) if isinstance(position, dict) else None  # step: 01e8972
        checks["schedule_state"] = (is_step(step) and is_step(position.get("total_steps"))
                                    and step <= position["total_steps"])
    if "history" in state:
        history = state["history"]
        checks["history"] = isinstance(history, list) and all(map(is_epoch_record, history))
    if "hyperparameters" in state:  # those a resume carries on with
        recorded = state["hyperparameters"]
        valid = {"optimizer": lambda value: value in ("sgd", "adam", "adamw"),
                 "batch_size": lambda value: type(value) is int and 1 <= value <= MAX_BATCH,
                 "lr": lambda value: is_number(value) and value > 0,
                 "label_smoothing": lambda value: is_number(value) and 0 <= value <= 1,
                 "weight_decay": lambda value: is_number(value) and value >= 0,
                 "warmup": lambda value: is_number(value) and 0 < value < 1,
                 "momentum": lambda value: isinstance(value, (tuple, list)) and len(value) == 2
                 and all(is_number(part) and 0 <= part < 1 for part in value),
                 "augment": lambda value: type(value) is bool}
        checks["hyperparameters"] = isinstance(recorded, dict) and all(
            fine(recorded[name]) for name, fine in valid.items() if name in recorded)
    return [key for key, fine in checks.items() if not fine]


def restore_optimizer(optimizer, state: dict, path) -> None:
    """Load the recorded optimizer state into `optimizer`, refusing in one line one of another kind (a run
    trained with SGD cannot carry on with Adam's state) or one that does not fit its parameters."""
    recorded, building = state.get("optimizer", "SGD"), type(optimizer).__name__
    if recorded != building:
        raise UserError(f"{path} was trained with {shown(recorded, 40)}, and this run builds {building}: "
                        "its optimizer state cannot carry over to another optimizer")
    saved = state["optimizer_state_dict"]
    if not fits(saved, optimizer.param_groups):
        raise UserError(f"{path}: the optimizer state in the checkpoint does not fit this model and optimizer")
    # a setting an earlier version did not record (torch.optim's own flags) keeps this optimizer's
    groups = [group | entry for group, entry in zip(optimizer.param_groups, saved["param_groups"])]
    optimizer.load_state_dict(saved | {"param_groups": groups})


def fits(saved, groups) -> bool:
    """Whether `saved` is torch.optim's state for these parameter groups: as many groups of as many parameters,
    each setting of the kind this optimizer's is (a flag a flag, a number a number of its range), no state or the
    same kinds of state for every trained parameter, each tensor that parameter's shape and dtype or a single
    number (a step count)."""
    def setting(value, like=0.0) -> bool:
        if isinstance(like, bool) or like is None or isinstance(value, bool):
            return type(value) is type(like)
        if isinstance(like, (list, tuple)):  # Adam's betas
            return isinstance(value, (list, tuple)) and len(value) == len(like) and all(map(setting, value, like))
        return is_number(value) and value >= 0

    parameters = [parameter for group in groups for parameter in group["params"]]
    if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict)
            and isinstance(saved.get("param_groups"), list) and len(saved["param_groups"]) == len(groups)):
        return False
    for entry, group in zip(saved["param_groups"], groups):
        if not (isinstance(entry, dict) and isinstance(entry.get("params"), list)
                and len(entry["params"]) == len(group["params"])
                and all(setting(value, group.get(key, 0.0)) for key, value in entry.items() if key != "params")):
            return False
    numbers = [number for entry in saved["param_groups"] for number in entry["params"]]
    if not all(type(number) is int for number in numbers):
        return False
    trainable = {number for number, parameter in enumerate(parameters) if parameter.requires_grad}
    kinds = {frozenset(entry) if isinstance(entry, dict) else None for entry in saved["state"].values()}
    if saved["state"] and (set(saved["state"]) != trainable or len(kinds) > 1):
        return False  # torch.optim keeps the same state for every trained parameter: fused kernels need all of it
    return numbers == list(range(len(parameters))) and all(  # numbered in order, as torch.optim writes them
        type(number) is int and isinstance(entry, dict)  # one of the trained parameters' numbers (above)
        and all(isinstance(value, torch.Tensor) and (value.shape == () or value.shape == parameters[number].shape
                                                     and value.dtype == parameters[number].dtype)
                for value in entry.values())
        for number, entry in saved["state"].items())


def newest_checkpoint(path: Path) -> Path:
    """`path` itself, or for a folder its newest checkpoint, by modification time, among its *.pth files that are
    not hidden (a run's temporary files, the systems' ._ files); one that is not a regular file (a broken
    symlink, a folder) is passed over, and a broken symlink is named."""
    if kind_of(path) != "folder":
        return path
    found = []
    for candidate in filter(is_ours, path.glob("*.pth")):
        try:
            status = candidate.stat()
        except OSError as error:  # a symlink to nothing, or a loop
            print(f"note: passed over {shown(candidate)}: a broken symlink ({error.strerror})", file=sys.stderr)
            continue
        if stat.S_ISREG(status.st_mode):
            found.append((status.st_mtime, candidate))
    if not found:
        raise UserError(f"no checkpoint (*.pth) in {path}")
    return max(found)[1]


@contextmanager
def checkpoint_file(path, log=print):
    """The checkpoint that `path` names, as every reader takes it (evaluate.py, --resume, draw.py): a .pth,
    a folder's newest, or the newest .pth in a zip (a CI artifact). Yields (the file to read, its name for
    messages); an extracted one lives for the time of the `with`."""
    path = newest_checkpoint(Path(path))
    with opened(path, log) as file:
        yield file, path if file == path else f"{path}: {shown(file.name, 100)}"


@contextmanager
def opened(path, log=print):
    """Yield the checkpoint file at `path`: a .pth as it is, or the one inside a zip archive, such as a CI
    artifact downloaded from GitHub's run page (mnist-model-12.zip): its only .pth, or the newest of several
    (saying which), extracted to a temporary folder for the time of the `with`. torch's own format is a zip
    too: one whose members include data.pkl is a checkpoint itself. A member larger than MAX_BYTES is refused
    before anything is extracted."""
    path = Path(path)
    if kind_of(path) != "file" or not zipfile.is_zipfile(path):  # is_zipfile would wait on a FIFO
        yield path
        return
    with damaged_zip(path), zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    if any(PurePosixPath(member.filename).name == "data.pkl" for member in members):
        yield path  # torch's format: the file is the checkpoint
        return
    found = [member for member in members if not member.is_dir() and member.filename.endswith(".pth")
             and not PurePosixPath(member.filename).name.startswith(".")]
    if not found:
        raise UserError(f"{path}: a zip archive with no checkpoint (.pth) in it")
    member = max(found, key=lambda candidate: (candidate.date_time, candidate.filename))
    if len(found) > 1:
        log(f"{shown(path)} holds {len(found)} checkpoints: reading the newest, {shown(member.filename, 100)}")
    if member.file_size > MAX_BYTES:
        raise UserError(f"{path}: refused: {shown(member.filename, 100)} would unpack to {member.file_size:,} "
                        f"bytes, far more than a checkpoint ({MAX_BYTES // 2**20} MB at most)")
    with TemporaryDirectory() as folder:
        extracted = Path(folder) / PurePosixPath(member.filename).name  # never the archive's own path
        with damaged_zip(path), zipfile.ZipFile(path) as archive, archive.open(member) as source:
            with reporting("write", extracted), open(extracted, "wb") as target:
                shutil.copyfileobj(source, target)  # stops at the declared size; a bad CRC raises
        yield extracted  # outside the guards: what the reader raises is its own


@contextmanager
def damaged_zip(path):
    """What zipfile raises about a damaged archive, as one line: "BadZipFile", a bad CRC or deflate stream,
    an early end, a method or version it does not know, a member name not in the encoding its flag claims."""
    try:
        with reporting("read", path):
            yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as error:
        raise UserError(f"{path}: a damaged zip archive ({error})") from None
