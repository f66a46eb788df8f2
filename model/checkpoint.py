"""A checkpoint's network: the checks that need to know HybridCNN (its architecture, its widths, the split
between the stages), rebuilding the network from what a checkpoint records, and loading its weights. Reading
the file and checking the rest is utils/checkpoint.py's."""
import re

import torch

from model.network import CHANNELS, DROPOUT, MAX_BLOCKS, HybridCNN, buildable, count_parameters
from model.placement import Placement, resolve_placement
from utils.checkpoint import described, is_number, load_checkpoint
from utils.errors import UserError, shown

ARCHITECTURE = "HybridCNN"


def read_checkpoint(path, name=None) -> dict:
    """load_checkpoint, and a network this project builds: its architecture, its arguments, a split that falls
    inside it. Every way it is wrong is a one-line UserError (about `name`, for a temporary copy)."""
    state, path = load_checkpoint(path, name), name or path
    if state["architecture"] != ARCHITECTURE:
        raise UserError(f"{path}: a checkpoint of architecture {described(state['architecture'])}, not {ARCHITECTURE}")
    checks = {}
    if "network" in state:  # HybridCNN's arguments; checkpoints before them hold the design's network
        network = state["network"]
        checks["network"] = (isinstance(network, dict) and set(network) == {"channels", "dropout"}
                             and isinstance(network["channels"], list) and buildable(network["channels"])
                             and is_number(network["dropout"]) and 0 <= network["dropout"] < 1)
    try:
        split = Placement.from_dict(state["placement"]).split
    except (TypeError, UserError):
        split = None
    blocks = len(network_of(state)["channels"]) if checks.get("network", True) else MAX_BLOCKS
    checks["placement"] = split is not None and split <= blocks
    damaged = [f"{key} {described(state[key])}" for key, fine in checks.items() if not fine]
    if damaged:
        raise UserError(f"{path}: damaged checkpoint: {'; '.join(damaged)[:300]}")
    return state


def network_of(state: dict) -> dict:
    """HybridCNN's arguments as the checkpoint records them (checked by read_checkpoint); a checkpoint written
    before they were recorded holds the design's network."""
    return state.get("network", {"channels": list(CHANNELS), "dropout": DROPOUT})


def restore_model(model: torch.nn.Module, state: dict, path) -> None:
    """Load weights, refusing a state dict whose layers or shapes differ from this model's, or whose recorded
    parameter count is not the count of its weights."""
    weights = state["model_state_dict"]
    if "network" not in state:  # written when the blocks were attributes conv1, conv2, conv3: now blocks.0, 1, 2
        weights = {re.sub(r"^conv(\d)\.", lambda match: f"blocks.{int(match[1]) - 1}.", key): value
                   for key, value in weights.items()}
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise UserError(f"{path}: weights do not fit this HybridCNN (another architecture?): {first}") from None
    negative = [name for name, module in model.named_modules()
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
                and module.running_var is not None and (module.running_var < 0).any()]
    if negative:  # a variance is never negative: its square root would make every prediction NaN
        raise UserError(f"{path}: damaged checkpoint: {shown(negative[0], 100)}.running_var has negative variances")
    if count_parameters(model) != state["parameters"]:
        raise UserError(f"{path}: records {state['parameters']:,} parameters, but its weights hold "
                        f"{count_parameters(model):,}")


def load_model(path, placement_mode="auto", device=None, name=None) -> tuple[HybridCNN, dict]:
    """Rebuild the network a checkpoint records, for this machine: its widths, the recorded split point between
    the stages, the devices found here (or asked for). Returns the model in eval mode and the checkpoint."""
    state = read_checkpoint(path, name)
    split = Placement.from_dict(state["placement"]).split  # checked by read_checkpoint
    model = HybridCNN(resolve_placement(placement_mode, device, split=split), **network_of(state))
    restore_model(model, state, name or path)
    return model.eval(), state
