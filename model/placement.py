"""Where a network runs: a plan (plain data: the early device, the late one, and how many of an nn.Sequential's
children run early), and place(), which moves a model's parts there and makes its inputs hop between them.

Modes: `hybrid` puts the first `split` children of an nn.Sequential on the accelerator and the rest on the CPU;
`single` puts the whole model on one device; `auto` is hybrid when an accelerator is present and the model is a
sequence, single otherwise. Detection order: CUDA, then Apple MPS, then CPU.
"""
import os
import weakref
from dataclasses import dataclass

from utils.errors import UserError  # first: importing utils arms the Ctrl-C guard before torch loads

import torch
from torch import nn

MODES = ("auto", "hybrid", "single")
DEFAULT_SPLIT = 2  # HybridCNN's conv1, conv2 early; the rest and the classifier late


@dataclass(frozen=True)
class Machine:
    """What accelerators a machine has: detected, or described by hand (tests, planning)."""
    cuda_devices: int = 0
    mps: bool = False

    @classmethod
    def detect(cls) -> "Machine":
        return cls(torch.cuda.device_count() if torch.cuda.is_available() else 0, torch.backends.mps.is_available())

    def accelerator(self):
        return "cuda:0" if self.cuda_devices else "mps" if self.mps else None


@dataclass(frozen=True)
class Placement:
    early: str = "cpu"
    late: str = "cpu"
    split: int = DEFAULT_SPLIT  # hybrid: how many children of the sequence run early (1 to all but the last)

    @property
    def hybrid(self) -> bool:
        return self.early != self.late

    @property
    def accelerator(self) -> str | None:
        """The device other than the CPU that this plan uses, if any."""
        return next((device for device in (self.early, self.late) if device != "cpu"), None)

    @property
    def short_name(self) -> str:
        """cpu, cuda, mps, hybrid-cuda, hybrid-mps: used in checkpoint names."""
        accelerator = self.early.split(":")[0]
        return f"hybrid-{accelerator}" if self.hybrid else accelerator


def may_overlap(source: torch.device, target: torch.device) -> bool:
    """Whether a copy from `source` to `target` may be non-blocking: only host to CUDA. A copy back to the host
    returns before the data lands, so the CPU would read it too early, and non-blocking copies to MPS from a
    temporary host tensor have been reported to corrupt data (open PyTorch issues)."""
    return source.type == "cpu" and target.type == "cuda"


def make_reproducible(device) -> None:
    """On CUDA, the same seed gives the same numbers, as on the CPU: cuDNN's autotuner and its nondeterministic
    kernels off, and TF32 off (PyTorch lets cuDNN convolutions round to TF32 by default: faster on recent
    GPUs, but not the float32 numbers the CPU computes). An operation that has no deterministic CUDA kernel
    warns rather than stops; none of the ones training uses is such. Called for every device a model is
    placed on; nothing to do for the CPU and MPS."""
    if torch.device(device).type != "cuda":
        return
    # cuBLAS is deterministic only with a fixed workspace; it reads this when its first operation sets up, after
    # a model is placed (a setting of the user's own wins)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # nothing here reads memory before writing it


def accelerator_kind(placement: Placement) -> str | None:
    """"cuda", "mps", or None for a plan that runs on the CPU alone."""
    return torch.device(placement.accelerator).type if placement.accelerator else None


def accelerator_rng_states(placement: Placement) -> dict:
    """The random-number states of the accelerator a placement uses (dropout and augmentation draw there), as
    plain tensors for a checkpoint: {"cuda": [one per CUDA device]}, {"mps": state}, or {} on the CPU."""
    kind, read = accelerator_kind(placement), {"cuda": torch.cuda.get_rng_state_all, "mps": torch.mps.get_rng_state}
    return {kind: read[kind]()} if kind in read else {}


def restore_accelerator_rng_states(states: dict, placement: Placement, source) -> None:
    """Put the accelerator's random-number generators back where accelerator_rng_states found them, for the device
    this placement uses: a run resumed on another kind of machine draws afresh there. A state that does not fit is
    a UserError naming `source`."""
    kind = accelerator_kind(placement)
    try:
        if kind == "cuda":
            for index, state in enumerate(states.get("cuda", [])[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state, index)
        if kind == "mps" and "mps" in states:
            torch.mps.set_rng_state(states["mps"])
    except RuntimeError:  # a state of the wrong size
        raise UserError(f"{source}: damaged checkpoint: device_rng_states does not fit this machine's "
                        "devices") from None


def peak_memory_mb(device) -> float | None:
    """The most memory tensors held on an accelerator since the process started (CUDA); on MPS, which keeps no
    peak, what its driver holds now; None for the CPU (the process's peak is the operating system's to tell)."""
    kind = torch.device(device).type if device else "cpu"
    if kind == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if kind == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    return None


def normalize_device(device: str, machine: Machine) -> str:
    """'cuda' -> 'cuda:0'; refuse a device this machine does not have."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r} (use cpu, cuda, cuda:N or mps)") from None
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type == "cuda":
        index = parsed.index or 0
        if index >= machine.cuda_devices:
            found = f"{machine.cuda_devices} CUDA device(s)" if machine.cuda_devices else "no CUDA device"
            raise UserError(f"device {device!r} asked for, but this machine has {found}")
        return f"cuda:{index}"
    if parsed.type == "mps":
        if not machine.mps:
            raise UserError(f"device {device!r} asked for, but Apple's MPS backend is not available here")
        return "mps"
    raise UserError(f"unsupported device {device!r} (use cpu, cuda, cuda:N or mps)")


def resolve_placement(mode="auto", device=None, machine=None, split=None, model=None) -> Placement:
    """Turn a mode and an optional explicit device into a plan for this (or a described) machine, and for `model`
    where given: a split that fits it (by default DEFAULT_SPLIT, or all but its last layer where it is shorter);
    a model that is not an nn.Sequential runs on one device."""
    if mode not in MODES:
        raise UserError(f"placement must be one of {', '.join(MODES)}, not {mode!r}")
    machine = machine or Machine.detect()
    chosen = normalize_device(device, machine) if device else machine.accelerator() or "cpu"
    sequence = model is None or splittable(model)
    if split is not None and not sequence:  # recorded, it would have no effect
        raise UserError(f"split {split}: a split divides an nn.Sequential between devices, and this model is a "
                        f"{type(model).__name__}, which runs on one device: leave --split out")
    if split is not None and mode == "single":
        raise UserError(f"split {split}: --placement single runs the whole model on one device: leave --split out")
    if model is not None and sequence:
        split = check_split(model, min(DEFAULT_SPLIT, len(model) - 1) if split is None else split)
    split = DEFAULT_SPLIT if split is None else split
    if mode == "hybrid" and not sequence:
        raise UserError(f"hybrid placement splits an nn.Sequential between devices, and this model is a "
                        f"{type(model).__name__}: use --placement single or auto")
    if mode == "single" or mode == "auto" and (chosen == "cpu" or not sequence):
        return Placement(chosen, chosen, split)
    if chosen == "cpu":
        raise UserError("hybrid placement needs an accelerator (CUDA or MPS), and none is "
                        + ("asked for" if device else "present") + "; use --placement single or auto")
    return Placement(chosen, "cpu", split)


def splittable(model: nn.Module) -> bool:
    return isinstance(model, nn.Sequential) and len(model) > 1


def check_split(model: nn.Module, split: int) -> int:
    """`split` if it leaves a layer of the sequence `model` on each side; else a UserError saying what would."""
    layers = len(model) if isinstance(model, nn.Sequential) else 1
    if not 1 <= split < layers:
        raise UserError(f"split {split}: this {type(model).__name__} has {layers} layers in sequence, so 1 to "
                        f"{layers - 1} of them can run on the accelerator")
    return split


HOOKS = weakref.WeakKeyDictionary()  # model -> the hooks place() gave it, removed when it is placed again


def place(model: nn.Module, placement: Placement) -> nn.Module:
    """Move `model` to the plan's devices, in place: all of it (single), or an nn.Sequential's first
    `placement.split` children to the early device and the rest to the late one (hybrid). Its input then moves
    to the early device and, at the split, to the late one, by forward pre-hooks: every hop between devices is
    made here. Returns the model; its output is on the late device."""
    if placement.hybrid:
        check_split(model, placement.split)
    for handle in HOOKS.pop(model, []):
        handle.remove()
    parts = [(model, placement.early)] if not placement.hybrid else [
        (child, placement.early if index < placement.split else placement.late) for index, child in enumerate(model)]
    for part, device in parts:
        make_reproducible(device)
        part.to(device)
    entries = [(model, placement.early)] + ([(model[placement.split], placement.late)] if placement.hybrid else [])
    HOOKS[model] = [part.register_forward_pre_hook(moving_to(torch.device(device))) for part, device in entries]
    return model


def moving_to(device: torch.device):
    """A forward pre-hook that moves a module's tensor inputs to `device`: every copy between devices in this
    project, each overlapping with compute where may_overlap says that is safe."""
    def hook(module, inputs):
        return tuple(x.to(device, non_blocking=may_overlap(x.device, device)) if isinstance(x, torch.Tensor) else x
                     for x in inputs)
    return hook


def describe(model: nn.Module) -> str:
    """What runs where, named by the model's own children (where it has a parameter or buffer): for example
    "0-1 (ConvBlock) -> cuda:0 | 2-3 (ConvBlock, Classifier) -> cpu", or "HybridCNN -> cpu"."""
    if not isinstance(model, nn.Sequential):
        return f"{type(model).__name__} -> {device_of(model)}"
    groups = []  # [device, first index, last index, class names]
    for index, child in enumerate(model):
        device = device_of(child) or (groups[-1][0] if groups else None)
        if groups and groups[-1][0] == device:
            groups[-1][2] = index
            groups[-1][3] += [type(child).__name__] if type(child).__name__ not in groups[-1][3] else []
        else:
            groups.append([device, index, index, [type(child).__name__]])
    if len(groups) == 1:
        return f"{type(model).__name__} -> {groups[0][0]}"
    return " | ".join(f"{first}{f'-{last}' if last > first else ''} ({', '.join(names)}) -> {device}"
                      for device, first, last, names in groups)


def device_of(module: nn.Module) -> torch.device | None:
    """The device of a module's first parameter or buffer (None for one with neither)."""
    return next((tensor.device for tensor in [*module.parameters(), *module.buffers()]), None)
