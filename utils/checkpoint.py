"""Checkpoints: plain types and CPU tensors only (so `torch.load(path, weights_only=True)` reads them on any
machine, one without a GPU too), written atomically (temporary file, then rename) under names that never
collide."""
from pathlib import Path

import torch

from model import HybridCNN, Placement, count_parameters, resolve_placement
from utils.errors import UserError
from utils.files import replace_atomically, timestamp, write_new

ARCHITECTURE = "HybridCNN"
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


def save_new(state: dict, models_dir, device_name: str) -> Path:
    """Write models_dir/model_<device>_<YYYYmmdd_HHMMSS>.pth; two runs in the same second get distinct names."""
    state = on_cpu(state)
    try:
        return write_new(models_dir, f"model_{device_name}_{timestamp()}", ".pth", lambda path: torch.save(state, path))
    except OSError as error:
        raise UserError(f"cannot write a checkpoint in {models_dir}: {error.strerror or error}") from None


def save_over(state: dict, path: Path) -> None:
    """Atomically replace this run's own checkpoint (written by save_new) with a newer state."""
    state = on_cpu(state)
    replace_atomically(path, lambda temporary: torch.save(state, temporary))


def load_checkpoint(path) -> dict:
    """Read a checkpoint with weights-only loading; every way it can be wrong is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types here: classify by what it says
        if "GLOBAL" in str(error):  # weights-only unpickling met a class or function: code, refused
            raise UserError(f"{path}: refused: it holds pickled code or objects that weights-only "
                            "loading does not allow (not a checkpoint written by this project)") from None
        raise UserError(f"{path}: not a readable checkpoint (truncated or not a PyTorch file)") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        missing = REQUIRED if not isinstance(state, dict) else [key for key in REQUIRED if key not in state]
        raise UserError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(state[key], kind) or isinstance(state[key], bool)]
    if wrong:
        raise UserError(f"{path}: damaged checkpoint: {', '.join(wrong)} of the wrong type")
    if state["architecture"] != ARCHITECTURE:
        raise UserError(f"{path}: a checkpoint of architecture {state['architecture']!r}, not {ARCHITECTURE}")
    return state


def restore_model(model: torch.nn.Module, state: dict, path) -> None:
    """Load weights, refusing a state dict whose layers or shapes differ from this model's."""
    try:
        model.load_state_dict(state["model_state_dict"])
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise UserError(f"{path}: weights do not fit this HybridCNN (another architecture?): {first}") from None


def load_model(path, placement_mode="auto", device=None) -> tuple[HybridCNN, dict]:
    """Rebuild the network a checkpoint records, for this machine: the recorded split point between the
    stages, the devices found here (or asked for). Returns the model in eval mode and the checkpoint."""
    state = load_checkpoint(path)
    try:
        split = Placement.from_dict(state["placement"]).split
    except (TypeError, UserError):
        raise UserError(f"{path}: damaged checkpoint: placement {state['placement']!r} is not a plan") from None
    model = HybridCNN(resolve_placement(placement_mode, device, split=split))
    restore_model(model, state, path)
    if count_parameters(model) != state["parameters"]:
        raise UserError(f"{path}: records {state['parameters']:,} parameters, but its weights hold "
                        f"{count_parameters(model):,}")
    return model.eval(), state
