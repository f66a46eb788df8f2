"""Checkpoints: plain types and CPU tensors only (so `torch.load(path, weights_only=True)` reads them on any
machine, one without a GPU too), written atomically (temporary file, then rename) under names that never
collide."""
import io
import math
import re
import shutil
import stat
import sys
import time
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory

import torch

from utils.errors import UserError, shown
from utils.flags import MAX_BATCH, MAX_BLOCKS, MAX_EPOCHS, MAX_LR, MAX_WIDTH, SEEDS
from utils.schema import Either, Invalid, Kind, Mapping, Number, Record, Seq, Tensor, Text, check, maybe
from utils.files import is_ours, kind_of, regular_file, replace_atomically, reporting, timestamp, write_new

MAX_BYTES = 64 * 2**20  # a checkpoint of this project unpacks to about 170 KB: one declaring more is refused
MAX_PICKLE = 2**20  # its record of plain data (data.pkl): at most 3 KB an epoch, each byte of which can make an
#                    object of 200 bytes (an empty set): 1 MB makes at most 200 MB of them (bench/bench_reader.py)
MAX_POINTS = 2_500  # of a training curve in an epoch (50 since 2026-12-06; one every 25 steps at batch 1 before)


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
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError):  # the last: "zip file version 19.7"
        raise UserError(f"{path}: not a readable checkpoint (truncated, or not a PyTorch file)") from None
    unpacked = sum(member.file_size for member in members)
    record = sum(member.file_size for member in members if member.filename.endswith(".pkl"))
    if unpacked > MAX_BYTES:  # torch reads every record whole: a small, compressed file could fill the memory
        raise UserError(f"{path}: refused: it would unpack to {unpacked:,} bytes, far more than a checkpoint "
                        f"({MAX_BYTES // 2**20} MB at most)")
    if record > MAX_PICKLE:
        raise UserError(f"{path}: refused: its record of plain data is {record:,} bytes, far more than a "
                        f"checkpoint's ({MAX_PICKLE // 2**20} MB at most)")
    try:
        with warnings.catch_warnings():  # torch warns about some files before refusing them: one line is ours
            warnings.simplefilter("ignore")
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types here: classify by what it says
        if "GLOBAL" in str(error):  # weights-only unpickling met a class or function: code, refused
            raise UserError(f"{path}: refused: it holds pickled code or objects that weights-only "
                            "loading does not allow (not a checkpoint written by this project)") from None
        raise UserError(f"{path}: not a readable checkpoint (truncated, or not a PyTorch file)") from None
    return checked(upgraded(state, path), path)


PLAIN = Either((Kind(bool), Kind(type(None)), Number(-math.inf, math.inf), Text(40)))  # inf: ReduceLROnPlateau's
STEPS = Number(0, 2**40, whole=True)
SETTINGS = Either((PLAIN, Seq(PLAIN, 16), Mapping(STEPS, STEPS, 64)))  # a scheduler's (MultiStepLR's milestones)
SETTING = Either((Kind(bool), Kind(type(None)), Number(0, 1e12), Text(40), Seq(Number(0, 1e12), 4)))  # torch.optim's
POINT = Seq(Number(0, 1e12), 4, 3)  # a training curve's: (images seen, loss, accuracy[, cross-entropy])
EPOCH = Record({"epoch": Number(1, MAX_EPOCHS, whole=True), "train_loss": Number(0, 1e12),
                "train_cross_entropy": Number(0, 1e12), "train_accuracy": Number(0, 100), "test_loss": Number(0, 1e12),
                "test_accuracy": Number(0, 100), "train_seconds": Number(0, 1e12),
                "first_steps": Record({"images": Number(1, 2**40, whole=True), "seconds": Number(0, 1e12)}),
                "curve": Seq(POINT, MAX_POINTS), "device_peak_mb": maybe(Number(0, 1e12)), "lr": Number(0, 1e12)},
               optional=frozenset({"train_cross_entropy", "first_steps", "device_peak_mb", "lr"}))  # not always written
# 01e8972 trained SGD only; a momentum-free optimizer has no momentum range, a scheduler other than OneCycleLR
# neither that nor a warm-up
RECIPE = Record({"optimizer": Text(40), "batch_size": Number(1, MAX_BATCH, whole=True),
                 "lr": Number(0, MAX_LR, above_low=True), "label_smoothing": Number(0, 1), "weight_decay": Number(0, 1),
                 "warmup": Number(0, 0.99), "momentum": Seq(Number(0, 0.999), 2, 2),
                 "shift": Number(0, 4, whole=True), "clean_last_epoch": Kind(bool), "augment": Kind(bool)},
                optional=frozenset({"optimizer", "momentum", "warmup"}))
# A scheduler's state: where it is (COUNTERS, which a resume takes from the record, so typed here: the step counts,
# CosineAnnealingWarmRestarts' place in its period, ReduceLROnPlateau's best loss and counters), and what the
# schedule is (every other key: plain values, which a resume compares with the scheduler the code builds; OneCycleLR's
# by name, torch's versions differ in the optional keys). A run reads its steps (steps_taken), and total_steps
# where it is.
PLACES = {"T_cur": Number(0, 2**40), "T_i": Number(1, 2**40, whole=True), "best": Number(-math.inf, math.inf),
          "num_bad_epochs": STEPS, "cooldown_counter": STEPS}  # counters that OneCycleLR does not keep
COUNTERS = {"last_epoch": STEPS, "_step_count": STEPS, "_last_lr": Seq(Number(0, 1e12), 16), "_is_initial": Kind(bool),
            "_get_lr_called_within_step": Kind(bool), "verbose": Either((Kind(bool), Text(20)))} | PLACES
ONE_CYCLE = {"total_steps": STEPS, "_schedule_phases": Seq(Record({"end_step": Number(-1, 2**40), "start_lr": Text(20),
                                                                   "end_lr": Text(20), "start_momentum": Text(20),
                                                                   "end_momentum": Text(20)}), 3, 2),
             "_anneal_func_type": Text(6, ("cos", "linear")), "cycle_momentum": Kind(bool), "use_beta1": Kind(bool),
             "base_lrs": Seq(Number(0, 1e12), 16)}
SCHEDULE = Record(COUNTERS | ONE_CYCLE, optional=frozenset(COUNTERS | ONE_CYCLE), rest=Either((
    SETTINGS, Seq(Record(COUNTERS, optional=frozenset(COUNTERS), rest=SETTINGS), 8))))
GENERATOR = Tensor((torch.uint8,), (tuple(torch.get_rng_state().shape),))  # a CPU generator's state
DEVICE_GENERATOR = Tensor((torch.uint8,), longest=2**16)  # a CUDA or MPS generator's state
WEIGHTS = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool)  # a network's own buffers may hold any (its loader checks them)
LAYERS = Mapping(Text(200), Seq(Number(0, 2**31, whole=True), 8), 1000)  # a layer's name -> its shape
FOREIGN = ("architecture", "model_state_dict", "optimizer_state_dict", "epochs")  # a file without these is not ours


def schema(layers: dict) -> Record:
    """Exactly what a run of this version writes (model/checkpoint.py, Run.save), for a network of these layers:
    its weights are those layers, its optimizer state tensors of their shapes (or single numbers)."""
    numbers = Number(0, len(layers) - 1, whole=True)  # a parameter's, as torch.optim numbers them
    shapes = tuple({tuple(shape) for shape in layers.values()} | {()})
    return Record({
        "architecture": Text(200), "build_model": Record({"channels": Seq(Number(1, MAX_WIDTH, whole=True),
                                                                          MAX_BLOCKS, 2),
                                                         "dropout": Number(0, 0.99)}),
        "layers": LAYERS,
        "model_state_dict": Record({name: Tensor(WEIGHTS, (tuple(shape),)) for name, shape in layers.items()},
                                   longest=len(layers)),
        "optimizer": Text(40),
        "optimizer_state_dict": Record({"state": Mapping(numbers, Record({}, rest=Tensor((torch.float32,), shapes),
                                                                         longest=8), len(layers)),
                                        "param_groups": Seq(Record({"params": Seq(numbers, len(layers))}, rest=SETTING),
                                                            16, 1)}),
        "schedule_state": SCHEDULE, "generator_state": GENERATOR, "rng_state": GENERATOR,
        "device_rng_states": Record({"cuda": Seq(DEVICE_GENERATOR, 64), "mps": DEVICE_GENERATOR},
                                    optional=frozenset({"cuda", "mps"})),
        "device_used": Text(40),
        "placement": Record({"early": Text(40), "late": Text(40), "split": Number(1, len(layers), whole=True)}),
        "epochs": Number(1, MAX_EPOCHS, whole=True), "planned_epochs": Number(1, MAX_EPOCHS, whole=True),
        "final_test_accuracy": Number(0, 100), "final_test_loss": Number(0, 1e12), "history": Seq(EPOCH, MAX_EPOCHS),
        "parameters": Number(1, 2**40, whole=True), "seed": Number(0, SEEDS - 1, whole=True),
        "hyperparameters": RECIPE, "torch_version": Text(100), "timestamp": Text(40)})


def checked(state, path) -> dict:
    """`state` if it is what this version writes (schema), its parts consistent with each other; else a one-line
    UserError naming the first value that is not."""
    if not isinstance(state, dict) or not all(key in state for key in FOREIGN):
        missing = FOREIGN if not isinstance(state, dict) else [key for key in FOREIGN if key not in state]
        raise UserError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    if "layers" not in state:
        raise UserError(f"{path}: no record of its network's layers (written by a version of this project before "
                        "2026-12-03, which this one does not read)")
    try:
        check(state["layers"], LAYERS, "layers")
        check(state, schema(state["layers"]), "")
    except Invalid as error:
        raise UserError(f"{path}: damaged checkpoint: {error}") from None
    history, schedule = state["history"], state["schedule_state"]
    steps = steps_taken(schedule)
    tops = {name.split(".")[0] for name in state["layers"]}  # a sequence's children are 0, 1, ...
    children = 1 + max(map(int, tops)) if tops and all(top.isdigit() for top in tops) else None
    inconsistent = {  # each part fits its schema: do they fit each other?
        "placement splits the network after its last layer": children and state["placement"]["split"] >= children,
        "history does not hold one record per epoch": [entry["epoch"] for entry in history]
        != list(range(1, state["epochs"] + 1)),
        "epochs is more than planned_epochs": state["epochs"] > state["planned_epochs"],
        "schedule_state has no step count (last_epoch)": steps is None,
        "schedule_state is past its last step": (steps or 0) > schedule.get("total_steps", math.inf),
        "schedule_state has no total_steps": "total_steps" not in schedule  # OneCycleLR's, unless another's
        and schedule.keys() <= SCHEDULE.fields.keys() - PLACES.keys()}
    wrong = next((problem for problem, found in inconsistent.items() if found), None)
    if wrong:
        raise UserError(f"{path}: damaged checkpoint: {wrong}")
    return state


def steps_taken(schedule: dict):
    """The steps a recorded schedule has taken: its last_epoch, or ChainedScheduler's, which keeps none of its own:
    its first scheduler's (each takes every step). None where there is no count."""
    inner = schedule.get("_schedulers")
    first = inner[0] if type(inner) is list and inner and type(inner[0]) is dict else {}
    steps = schedule.get("last_epoch", first.get("last_epoch"))
    return steps if is_number(steps) else None


def upgraded(state, path):
    """A checkpoint of main at 01e8972 (HybridCNN's arguments under "network", layers blocks.N and fc, the
    schedule's own step counter) as this version writes it; any other as it is, for the schema to judge."""
    if not (type(state) is dict and "network" in state and "layers" not in state):
        return state
    weights = state.get("model_state_dict")
    if not (type(weights) is dict and len(weights) <= 1000 and all(
            type(name) is str and type(tensor) is torch.Tensor for name, tensor in weights.items())):
        raise UserError(f"{path}: damaged checkpoint: model_state_dict is not a dict of layers' names and tensors")
    blocks = len(state["network"]["channels"]) if type(state["network"]) is dict and type(
        state["network"].get("channels")) is list else 0
    weights = {re.sub(r"^blocks\.(\d+)\.", r"\1.", re.sub(r"^fc\.", f"{blocks}.", name)): tensor
               for name, tensor in weights.items()}
    state = {key: value for key, value in state.items() if key != "network"} | {
        "build_model": state["network"], "model_state_dict": weights,
        "layers": {name: list(tensor.shape) for name, tensor in weights.items()}}
    schedule, recipe = state.get("schedule_state"), state.get("hyperparameters")
    groups = state["optimizer_state_dict"].get("param_groups") if type(state.get("optimizer_state_dict")) is dict \
        else None
    if type(schedule) is dict and "step" in schedule and type(recipe) is dict and type(recipe.get("lr")) is float \
            and type(groups) is list and len(groups) <= 16:  # OneCycleLR's terms
        state["schedule_state"] = {"last_epoch": schedule["step"], "total_steps": schedule.get("total_steps")}
        momentum = recipe.get("momentum")
        high, low = momentum if type(momentum) in (list, tuple) and len(momentum) == 2 else (0.95, 0.85)
        state["optimizer_state_dict"] = state["optimizer_state_dict"] | {"param_groups": [
            group | {"initial_lr": recipe["lr"] / 25, "max_lr": recipe["lr"], "min_lr": recipe["lr"] / 25 / 1e4,
                     "max_momentum": high, "base_momentum": low} if type(group) is dict else group
            for group in groups]}
    return state


def is_number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


HOW = ("foreach", "fused", "capturable", "differentiable")  # torch.optim's settings of how a step runs, not what


def restore_optimizer(optimizer, state: dict, path, settings=True) -> None:
    """Load the recorded optimizer state into `optimizer`, refusing in one line one of another kind (a run
    trained with SGD cannot carry on with Adam's state) or one that does not fit its parameters. `settings`
    False keeps the optimizer's own settings (learning rate, weight decay, ...) and loads each parameter's state."""
    recorded, building = state["optimizer"], type(optimizer).__name__
    if recorded != building:
        raise UserError(f"{path} was trained with {shown(recorded, 40)}, and this run builds {building}: "
                        "its optimizer state cannot carry over to another optimizer")
    saved = state["optimizer_state_dict"]
    if not fits(saved, optimizer.param_groups):
        raise UserError(f"{path}: the optimizer state in the checkpoint does not fit this model and optimizer")
    # a setting an earlier version did not record (torch.optim's own flags) keeps this optimizer's, as do those of
    # how it computes a step (train.py's OPTIMIZERS may have changed them since)
    groups = [group | {key: value for key, value in entry.items() if key not in HOW and (settings or key == "params")}
              for group, entry in zip(optimizer.param_groups, saved["param_groups"])]
    optimizer.load_state_dict(saved | {"param_groups": groups})


def restore_schedule(scheduler, recorded: dict, path) -> None:
    """Carry `scheduler`, as the code at hand built it, on from the step where the recorded schedule stopped;
    refused in one line where the record is of another schedule (another scheduler, or other settings), which
    carried on would change the run's learning rates in silence."""
    try:
        scheduler.load_state_dict(carried_on(scheduler.state_dict(), recorded))
    except Differs as error:
        key, there, here = error.args
        raise UserError(f"{path}: its schedule has {shown(key, 40)} {shown(there, 80)}, and the "
                        f"{type(scheduler).__name__} this code builds has {here}: it cannot carry that schedule on "
                        "(more --epochs start a fresh one)") from None


class Differs(Exception):
    """(key, recorded value, the built one as text): where a recorded schedule is not the one the code builds."""


def carried_on(built, recorded, key=None):
    """The state of the schedule `built`, at the step where `recorded` (the same schedule) stopped: its own settings
    and the record's counters (COUNTERS), at every level (SequentialLR's own schedulers too)."""
    if type(built) is dict and type(recorded) is dict:
        missing = [name for name in recorded if name not in built and name not in COUNTERS]
        if missing:
            raise Differs(missing[0], recorded[missing[0]], "none")
        return built | {name: value if name in COUNTERS else carried_on(built[name], value, name)
                        for name, value in recorded.items()}
    if type(built) is list and type(recorded) is list and len(built) == len(recorded):
        return [carried_on(part, there, key) for part, there in zip(built, recorded)]
    if built != recorded:
        raise Differs(key, recorded, shown(built, 80))
    return built


def fits(saved, groups) -> bool:
    """Whether `saved` (of the types the schema allows) is torch.optim's state for these parameter groups: as many
    groups of as many parameters, numbered in order, each setting of the kind this optimizer's is (a flag a flag,
    a number a number), no state or the same kinds of state for every trained parameter, each tensor that
    parameter's shape or a single number (a step count)."""
    def setting(value, like=0.0) -> bool:
        if isinstance(like, bool) or like is None or isinstance(value, bool):
            return type(value) is type(like)
        if isinstance(like, (list, tuple)):  # Adam's betas
            return isinstance(value, (list, tuple)) and len(value) == len(like) and all(map(setting, value, like))
        return is_number(value)

    parameters = [parameter for group in groups for parameter in group["params"]]
    if len(saved["param_groups"]) != len(groups) or not all(
            len(entry["params"]) == len(group["params"])
            and all(setting(value, group.get(key, 0.0)) for key, value in entry.items() if key not in ("params", *HOW))
            for entry, group in zip(saved["param_groups"], groups)):
        return False
    if [number for entry in saved["param_groups"] for number in entry["params"]] != list(range(len(parameters))):
        return False
    trainable = {number for number, parameter in enumerate(parameters) if parameter.requires_grad}
    if saved["state"] and (set(saved["state"]) != trainable or len({frozenset(entry) for entry in
                                                                     saved["state"].values()}) > 1):
        return False  # torch.optim keeps the same state for every trained parameter: fused kernels need all of it
    return all(value.shape in ((), parameters[number].shape) for number, entry in saved["state"].items()
               for value in entry.values())


def in_folder(path: Path) -> list[tuple[float, Path]]:
    """(modification time, file) for the checkpoints in a folder, newest first: its *.pth files that are not
    hidden (a run's temporary files, the systems' ._ files); one that is not a regular file (a broken symlink,
    a folder) is passed over, and a broken symlink is named. None at all is a UserError."""
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
    return sorted(found, reverse=True)


def in_archive(path: Path) -> list[zipfile.ZipInfo] | None:
    """The checkpoints (.pth members) of a zip archive, such as a CI artifact downloaded from GitHub's run page
    (mnist-model-12.zip), newest first; None where `path` is not a zip of checkpoints (torch's own format is a
    zip too: one whose members include data.pkl is a checkpoint itself)."""
    with damaged_zip(path):  # is_zipfile raises on some damaged archives ("span multiple disks"): the fuzz net
        if kind_of(path) != "file" or not zipfile.is_zipfile(path):  # a FIFO: is_zipfile would wait
            return None
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    if any(PurePosixPath(member.filename).name == "data.pkl" for member in members):
        return None
    found = [member for member in members if not member.is_dir() and member.filename.endswith(".pth")
             and not PurePosixPath(member.filename).name.startswith(".")]
    if not found:
        raise UserError(f"{path}: a zip archive with no checkpoint (.pth) in it")
    return sorted(found, key=lambda member: (member.date_time, member.filename), reverse=True)


@contextmanager
def extracted(path: Path, member: zipfile.ZipInfo):
    """A member of a zip archive, extracted to a temporary folder for the time of the `with`; one larger than
    MAX_BYTES is refused before anything is extracted."""
    if member.file_size > MAX_BYTES:
        raise UserError(f"{path}: refused: {shown(member.filename, 100)} would unpack to {member.file_size:,} "
                        f"bytes, far more than a checkpoint ({MAX_BYTES // 2**20} MB at most)")
    with TemporaryDirectory() as folder:
        file = Path(folder) / PurePosixPath(member.filename).name  # never the archive's own path
        with damaged_zip(path), zipfile.ZipFile(path) as archive, archive.open(member) as source:
            with reporting("write", file), open(file, "wb") as target:
                shutil.copyfileobj(source, target)  # stops at the declared size; a bad CRC raises
        yield file  # outside the guards: what the reader raises is its own


@contextmanager
def checkpoint_file(path, log=print):
    """The checkpoint that `path` names, as every reader takes it (evaluate.py, --resume, draw.py): a .pth, a
    folder's newest or the newest .pth in a zip (a CI artifact), saying which it took and why. Yields (the file
    to read, its name for messages); an extracted one lives for the time of the `with`."""
    path = Path(path)
    if kind_of(path) == "folder":
        found = in_folder(path)
        path = found[0][1]
        log(f"taking {shown(path.name)}: " + (f"the newest of {len(found)} checkpoints" if len(found) > 1 else
                                               "the only checkpoint") + f" in {shown(path.parent)}")
    members = in_archive(path)
    if members is None:
        yield path, path
        return
    if len(members) > 1:
        log(f"{shown(path)} holds {len(members)} checkpoints: reading the newest, {shown(members[0].filename, 100)}")
    with extracted(path, members[0]) as file:
        yield file, f"{path}: {shown(file.name, 100)}"


def every_checkpoint(path):
    """(name, date, the file to read) for each checkpoint in a folder or a zip, newest first by that date, the
    file's own (the order the readers go by, whatever the checkpoint records); a .pth is its own."""
    path, kind = Path(path), kind_of(path)
    if kind == "missing":
        raise UserError(f"checkpoint {path} does not exist")
    if kind == "folder":
        yield from ((file.name, minute(time.localtime(mtime)), file) for mtime, file in in_folder(path))
        return
    members = in_archive(path)
    if members is None:
        with reporting("read", path):
            mtime = path.stat().st_mtime
        yield path.name, minute(time.localtime(mtime)), path
        return
    for member in members:  # one at a time: a zip of many takes the disk of one
        try:
            with extracted(path, member) as file:
                yield member.filename, minute(member.date_time), file
        except UserError as error:
            yield member.filename, minute(member.date_time), error


def minute(when) -> str:
    """A date as the listing shows it, from a time.struct_time or a zip member's date_time."""
    return "{:04d}-{:02d}-{:02d} {:02d}:{:02d}".format(*tuple(when)[:5])


@contextmanager
def damaged_zip(path):
    """What zipfile raises about a damaged archive, as one line: "BadZipFile", a bad CRC or deflate stream,
    an early end, a method or version it does not know, a member name not in the encoding its flag claims."""
    try:
        with reporting("read", path):
            yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as error:
        raise UserError(f"{path}: a damaged zip archive ({error})") from None
