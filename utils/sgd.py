"""SGD with Nesterov momentum and a one-cycle schedule: torch.optim's interface, without torch.optim.

Why not torch.optim: constructing any torch.optim optimizer, a subclass of torch.optim.Optimizer included,
imports torch._dynamo, about a second of every run (docs/performance.md has the A/B). These two classes are
all training uses of it, and they compute the same numbers: a test checks the weights against
torch.optim.SGD + OneCycleLR, bit for bit, after a few hundred real steps. Any torch.optim optimizer can take
SGD's place in train.py: OneCycle drives it through its param_groups, as torch's schedulers do.
"""
import math

import torch

from utils.errors import UserError


class OneCycle:
    """The learning rate rises from peak/25 to the peak over the first `warmup` fraction of the steps,
    then falls to peak/250,000, on cosine curves, while the momentum (Adam's first beta) moves the other
    way between the two values of `momentum`: torch.optim.lr_scheduler.OneCycleLR's curves. The values of
    the coming step are written into every param group of `optimizer`; call step() after each optimizer
    step, as with torch's schedulers."""

    def __init__(self, optimizer, peak_lr, total_steps, warmup, momentum=(0.95, 0.85), start_div=25.0,
                 final_div=1e4):
        self.optimizer, self.total_steps, self.warmup, self.momentum = optimizer, total_steps, warmup, momentum
        self.peak_lr, self.start_lr = peak_lr, peak_lr / start_div
        self.final_lr = self.start_lr / final_div
        self.steps_done = 0
        self.apply()

    def values(self) -> tuple[float, float]:
        """(learning rate, momentum) for the coming step."""
        step = min(self.steps_done, self.total_steps - 1)  # past the end (an extra step): the last values
        rise_end = float(self.warmup * self.total_steps) - 1
        high, low = self.momentum
        if step <= rise_end:
            progress = step / rise_end
            return cosine(self.start_lr, self.peak_lr, progress), cosine(high, low, progress)
        progress = (step - rise_end) / (self.total_steps - 1 - rise_end)
        return cosine(self.peak_lr, self.final_lr, progress), cosine(low, high, progress)

    def apply(self) -> None:
        lr, momentum = self.values()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if "momentum" in group:
                group["momentum"] = momentum
            elif "betas" in group:  # Adam and its kind: the first beta plays momentum's part
                group["betas"] = (momentum, *group["betas"][1:])

    def step(self) -> None:
        self.steps_done += 1
        self.apply()

    def state_dict(self) -> dict:
        return {"step": self.steps_done, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        """Carry on at the recorded step (utils.checkpoint has checked it; the length is this schedule's own)."""
        self.steps_done = state["step"]
        self.apply()


def cosine(start, end, progress):
    return end + (start - end) / 2.0 * (math.cos(math.pi * progress) + 1)


class SGD:
    """torch.optim.SGD(params, lr, momentum, weight_decay=..., nesterov=True): the same numbers and the
    interface users rely on: param_groups (each group's lr, momentum and weight_decay are read at every step),
    step(closure=None), zero_grad(), and state_dict() / load_state_dict() in torch.optim.SGD's own format.
    Each momentum buffer starts at the first gradient. Parameters that do not require a gradient are left
    alone; one that does but got none in a step counts as having a zero gradient (HybridCNN's always get one).

    The trainable parameters of each group and device live in one flat tensor, each parameter a view of its
    part, so a step is six tensor operations per group and device rather than six per parameter (66 here).
    A model moved or cast after the optimizer was made (model.double(), model.to(...)) leaves its parameters
    outside that tensor: the next step notices, and gathers them, with their momentum, afresh."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0):
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.defaults = {"lr": lr, "momentum": momentum, "dampening": 0, "weight_decay": weight_decay,
                         "nesterov": True, "maximize": False}
        self.param_groups = [self.defaults | group | {"params": list(group["params"])} for group in groups]
        self.flats = self.gathered({})

    def gathered(self, buffers: dict) -> list["Flat"]:
        """One Flat per group and device, of the parameters as they are now, with the momentum `buffers`
        (parameter id -> tensor) moved into it."""
        flats = []
        for group in self.param_groups:
            by_device = {}
            for parameter in group["params"]:
                if parameter.requires_grad:
                    by_device.setdefault(parameter.device, []).append(parameter)
            flats += [Flat(group, members, buffers) for members in by_device.values()]
        return flats

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if any(flat.left() for flat in self.flats):  # the model was moved or cast since: gather it afresh
            self.flats = self.gathered(self.buffers())
        for flat in self.flats:
            lr, momentum, weight_decay = flat.group["lr"], flat.group["momentum"], flat.group["weight_decay"]
            grad = flat.gather([torch.zeros_like(p) if p.grad is None else p.grad for p in flat.members])
            grad.add_(flat.values, alpha=weight_decay)
            if flat.momentum is None:
                flat.momentum = grad.clone()
            else:
                flat.momentum.mul_(momentum).add_(grad)
            flat.values.add_(grad.add_(flat.momentum, alpha=momentum), alpha=-lr)
        return loss

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for parameter in group["params"]:
                if set_to_none:
                    parameter.grad = None
                elif parameter.grad is not None:
                    parameter.grad.zero_()

    def buffers(self) -> dict:
        """Parameter id -> its momentum buffer (a view), for the parameters whose buffer has started."""
        found = {}
        for flat in self.flats:
            if flat.momentum is not None:
                found |= {id(p): part for p, part in zip(flat.members, flat.split(flat.momentum))}
        return found

    def state_dict(self) -> dict:
        """torch.optim.SGD's format: parameters numbered across the groups in order, their momentum buffers
        (copies on the CPU) under "state", each group's settings under "param_groups"."""
        buffers, state, groups, index = self.buffers(), {}, [], 0
        for group in self.param_groups:
            numbers = list(range(index, index + len(group["params"])))
            for number, parameter in zip(numbers, group["params"]):
                if id(parameter) in buffers:
                    state[number] = {"momentum_buffer": buffers[id(parameter)].to("cpu", copy=True)}
            groups.append({key: value for key, value in group.items() if key != "params"} | {"params": numbers})
            index += len(numbers)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state: dict) -> None:
        """Read what state_dict() wrote (or an earlier version's {"momentum_buffers": [...]}), refusing, in one
        line, a state that does not fit these parameters."""
        parameters = [parameter for group in self.param_groups for parameter in group["params"]]
        if isinstance(state, dict) and isinstance(state.get("momentum_buffers"), list):  # before torch's format
            state = {"state": {number: {"momentum_buffer": buffer}
                               for number, buffer in enumerate(state["momentum_buffers"]) if buffer is not None},
                     "param_groups": None}
        if not fits(state, self.param_groups, parameters):
            raise UserError("the optimizer state in the checkpoint does not fit this model and optimizer")
        for group, saved in zip(self.param_groups, state["param_groups"] or []):
            group.update({key: value for key, value in saved.items() if key in ("lr", "momentum", "weight_decay")})
        buffers = {id(parameters[number]): entry["momentum_buffer"] for number, entry in state["state"].items()}
        self.flats = self.gathered(buffers)


def fits(state, groups, parameters) -> bool:
    """Whether `state` is an SGD state for these groups: as many groups of as many parameters, each buffer a
    tensor of its parameter's shape, each setting a number of its range."""
    def setting(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0

    def group_fits(saved, group) -> bool:
        return (isinstance(saved, dict) and isinstance(saved.get("params"), list)
                and len(saved["params"]) == len(group["params"])
                and all(setting(saved.get(key)) for key in ("lr", "momentum", "weight_decay")))

    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        return False
    saved_groups = state.get("param_groups")  # None: the earlier format, which kept no settings
    if saved_groups is not None and not (isinstance(saved_groups, list) and len(saved_groups) == len(groups)
                                         and all(map(group_fits, saved_groups, groups))):
        return False
    return all(type(number) is int and 0 <= number < len(parameters) and isinstance(entry, dict)
               and isinstance(entry.get("momentum_buffer"), torch.Tensor)
               and entry["momentum_buffer"].shape == parameters[number].shape
               for number, entry in state["state"].items())


ALIGNMENT = 16  # elements (64 bytes of float32): where each parameter's view starts in the flat tensor


class Flat:
    """Parameters of one group and device moved into one flat tensor, `values`: each becomes a view of its
    part. Each part starts at a multiple of ALIGNMENT elements, the gaps between them hold zeros: a view at an
    odd offset (the second conv's weight started at byte 1080) rules out some cuDNN and cuBLASLt kernels, and
    MPS has had silent bugs with offset views."""

    def __init__(self, group: dict, members: list, buffers: dict):
        self.group, self.members = group, members
        self.offsets, end = [], 0
        for parameter in members:
            start = -(-end // ALIGNMENT) * ALIGNMENT
            self.offsets.append(start)
            end = start + parameter.numel()
        self.gaps = [torch.zeros(later - (start + p.numel()), dtype=p.dtype, device=p.device)  # zeros stay zeros
                     for start, p, later in zip(self.offsets, members, self.offsets[1:] + [end])]
        self.values = self.gather([p.detach() for p in members])
        for parameter, part in zip(members, self.split(self.values)):
            parameter.data = part
        self.addresses = [parameter.data_ptr() for parameter in members]
        self.momentum = None  # flat too, once the first step starts it (a buffer not started is a zero one:
        if any(id(p) in buffers for p in members):  # the next step makes it the gradient either way)
            self.momentum = self.gather([buffers[id(p)].to(p) if id(p) in buffers else torch.zeros_like(p)
                                         for p in members])

    def left(self) -> bool:
        """Whether a parameter no longer lives in `values` (the model was moved or cast)."""
        return any(p.data_ptr() != address for p, address in zip(self.members, self.addresses))

    def gather(self, tensors):
        """One tensor per member (a gradient, say) -> a new flat tensor in this layout: one concatenation."""
        pieces = []
        for tensor, gap in zip(tensors, self.gaps):
            pieces += [tensor.reshape(-1), gap] if len(gap) else [tensor.reshape(-1)]
        return torch.cat(pieces)

    def split(self, flat):
        return [flat[start:start + p.numel()].view_as(p) for start, p in zip(self.offsets, self.members)]
