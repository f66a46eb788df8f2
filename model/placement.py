"""Where the network runs: a plan that maps its two stages to devices, kept as plain data.

The early stage holds the first `split` conv blocks (conv1 and conv2 by default), the late stage the
rest and the classifier. Modes: `hybrid` puts the early stage on the accelerator and the late stage on
the CPU; `single` puts everything on one device; `auto` is hybrid when an accelerator is present and
single on the CPU otherwise. Detection order: CUDA, then Apple MPS, then CPU.
"""
import os
from dataclasses import asdict, dataclass

from utils.errors import UserError  # first: importing utils arms the Ctrl-C guard before torch loads

import torch

MODES = ("auto", "hybrid", "single")
DEFAULT_SPLIT = 2  # conv1, conv2 early; the rest and the classifier late


@dataclass(frozen=True)
class Machine:
    """What accelerators a machine has: detected, or described by hand (tests, planning)."""
    cuda_devices: int = 0
    mps: bool = False

    @classmethod
    def detect(cls) -> "Machine":
        mps = getattr(torch.backends, "mps", None)
        return cls(torch.cuda.device_count() if torch.cuda.is_available() else 0,
                   bool(mps and mps.is_available()))

    def accelerator(self):
        return "cuda:0" if self.cuda_devices else "mps" if self.mps else None


@dataclass(frozen=True)
class Placement:
    early: str = "cpu"
    late: str = "cpu"
    split: int = DEFAULT_SPLIT  # how many conv blocks run in the early stage (1 to the network's number)

    def __post_init__(self):
        if not (isinstance(self.early, str) and isinstance(self.late, str)):
            raise UserError(f"devices are names such as cpu or cuda:0, not {type(self.early).__name__} and "
                            f"{type(self.late).__name__}")
        if type(self.split) is not int or self.split < 1:
            raise UserError(f"split must be a number of conv blocks in the early stage, 1 or more, not "
                            f"{str(self.split)[:20]}")

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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, plan: dict) -> "Placement":
        return cls(**plan)


def may_overlap(source: torch.device, target: torch.device) -> bool:
    """Whether a copy from `source` to `target` may be non-blocking: only host to CUDA. A copy back to the host
    returns before the data lands, so the CPU would read it too early, and non-blocking copies to MPS from a
    temporary host tensor have been reported to corrupt data (open PyTorch issues)."""
    return source.type == "cpu" and target.type == "cuda"


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """tensor.to(device), overlapping with compute where that is safe (may_overlap): every copy between devices
    in this project goes through here."""
    device = torch.device(device)
    return tensor.to(device, non_blocking=may_overlap(tensor.device, device))


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
    kind = accelerator_kind(placement)
    if kind == "cuda":
        return {"cuda": torch.cuda.get_rng_state_all()}
    if kind == "mps":
        return {"mps": torch.mps.get_rng_state()}
    return {}


def restore_accelerator_rng_states(states: dict, placement: Placement, source) -> None:
    """Put the accelerator's random-number generators back where accelerator_rng_states found them (the record
    is checked by utils.checkpoint.load_checkpoint), for the device this placement uses: a run resumed on
    another kind of machine draws afresh there. A state that does not fit is a UserError naming `source`."""
    kind = accelerator_kind(placement)
    try:
        if kind == "cuda" and "cuda" in states:
            for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state, index)
        if kind == "mps" and "mps" in states:
            torch.mps.set_rng_state(states["mps"])
    except RuntimeError:  # a state of the wrong size
        raise UserError(f"{source}: damaged checkpoint: device_rng_states does not fit this machine's "
                        "devices") from None


def reset_peak_memory(device) -> None:
    if device and torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device) -> float | None:
    """The most memory tensors held on an accelerator since reset_peak_memory (CUDA); on MPS, which keeps no
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


def resolve_placement(mode="auto", device=None, machine=None, split=DEFAULT_SPLIT) -> Placement:
    """Turn a mode and an optional explicit device into a plan for this (or a described) machine."""
    if mode not in MODES:
        raise UserError(f"placement must be one of {', '.join(MODES)}, not {mode!r}")
    machine = machine or Machine.detect()
    chosen = normalize_device(device, machine) if device else machine.accelerator() or "cpu"
    if mode == "single":
        return Placement(chosen, chosen, split)
    if mode == "hybrid" and chosen == "cpu":
        raise UserError("hybrid placement needs an accelerator (CUDA or MPS), and none is "
                        + ("asked for" if device else "present") + "; use --placement single or auto")
    if chosen == "cpu":  # auto without an accelerator
        return Placement("cpu", "cpu", split)
    return Placement(chosen, "cpu", split)
