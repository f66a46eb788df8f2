"""SGD with Nesterov momentum and a one-cycle schedule, without torch.optim.

Why not torch.optim: constructing any torch.optim optimizer imports torch._dynamo, which takes 1.4 s
here, more than a tenth of a whole one-epoch run. These two pieces are all training uses of it, and
they compute the same numbers: a test checks the weights against torch.optim.SGD + OneCycleLR, bit
for bit, after a few hundred real steps.
"""
import math

import torch

from utils.errors import UserError


class OneCycle:
    """The learning rate rises from peak/25 to the peak over the first `warmup` fraction of the steps,
    then falls to peak/250,000, on cosine curves, while the momentum moves the other way between 0.95
    and 0.85 (torch.optim.lr_scheduler.OneCycleLR's defaults)."""

    def __init__(self, peak_lr, total_steps, warmup, momentum=(0.95, 0.85), start_div=25.0, final_div=1e4, step=0):
        self.peak_lr, self.total_steps, self.warmup, self.momentum = peak_lr, total_steps, warmup, momentum
        self.start_lr = peak_lr / start_div
        self.final_lr = self.start_lr / final_div
        self.step = step

    def values(self) -> tuple[float, float]:
        """(learning rate, momentum) for the current step."""
        rise_end = float(self.warmup * self.total_steps) - 1
        high, low = self.momentum
        if self.step <= rise_end:
            progress = self.step / rise_end
            return cosine(self.start_lr, self.peak_lr, progress), cosine(high, low, progress)
        progress = (self.step - rise_end) / (self.total_steps - 1 - rise_end)
        return cosine(self.peak_lr, self.final_lr, progress), cosine(low, high, progress)

    def state_dict(self) -> dict:
        return {"step": self.step, "total_steps": self.total_steps}


def cosine(start, end, progress):
    return end + (start - end) / 2.0 * (math.cos(math.pi * progress) + 1)


class SGD:
    """p -= lr * (g + momentum * buffer), buffer = momentum * buffer + g, g = grad + weight_decay * p:
    torch.optim.SGD(nesterov=True, weight_decay=...) with the momentum buffer started at the first
    gradient. Parameters are updated with one batched (foreach) call per device."""

    def __init__(self, parameters, weight_decay):
        self.weight_decay = weight_decay
        self.groups = {}  # device -> its parameters, in model order within each device
        for parameter in parameters:
            self.groups.setdefault(parameter.device, []).append(parameter)
        self.buffers = None  # momentum, one list per device, in the same order

    @torch.no_grad()
    def step(self, lr, momentum):
        started = self.buffers is not None
        buffers = self.buffers or {}
        for device, parameters in self.groups.items():
            grads = torch._foreach_add([p.grad for p in parameters], parameters, alpha=self.weight_decay)
            if started:
                torch._foreach_mul_(buffers[device], momentum)
                torch._foreach_add_(buffers[device], grads)
            else:
                buffers[device] = [grad.clone() for grad in grads]
            torch._foreach_add_(grads, buffers[device], alpha=momentum)
            torch._foreach_add_(parameters, grads, alpha=-lr)
        self.buffers = buffers

    def zero_grad(self):
        for parameters in self.groups.values():
            for parameter in parameters:
                parameter.grad = None

    def state_dict(self) -> dict:
        """Plain data: the momentum buffers in model order (on the CPU), or None before the first step."""
        if self.buffers is None:
            return {"momentum_buffers": None}
        return {"momentum_buffers": [buffer.cpu() for device in self.groups for buffer in self.buffers[device]]}

    def load_state_dict(self, state: dict):
        if not isinstance(state, dict) or "momentum_buffers" not in state:
            raise UserError("the checkpoint's optimizer state is not one this project writes")
        flat = state["momentum_buffers"]
        if flat is None:  # saved before the first step
            self.buffers = None
            return
        shapes = [p.shape for parameters in self.groups.values() for p in parameters]
        if not isinstance(flat, list) or [getattr(buffer, "shape", None) for buffer in flat] != shapes:
            raise UserError("the optimizer state in the checkpoint does not fit this model")
        flat, self.buffers = iter(flat), {}
        for device, parameters in self.groups.items():
            self.buffers[device] = [next(flat).to(device) for _ in parameters]
