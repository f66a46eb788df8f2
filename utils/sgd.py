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
    torch.optim.SGD(nesterov=True, weight_decay=...), with each momentum buffer started at the first
    gradient and parameters without a gradient left alone. One batched (foreach) update per device."""

    def __init__(self, parameters, weight_decay):
        self.parameters = list(parameters)
        self.weight_decay = weight_decay
        self.buffers = [None] * len(self.parameters)  # momentum, per parameter

    @torch.no_grad()
    def step(self, lr, momentum):
        by_device = {}
        for index, parameter in enumerate(self.parameters):
            if parameter.grad is not None:
                by_device.setdefault(parameter.device, []).append(index)
        for indices in by_device.values():
            parameters = [self.parameters[i] for i in indices]
            grads = torch._foreach_add([p.grad for p in parameters], parameters, alpha=self.weight_decay)
            started = [(self.buffers[i], grad) for i, grad in zip(indices, grads) if self.buffers[i] is not None]
            if started:
                buffers, their_grads = map(list, zip(*started))
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, their_grads)
            for i, grad in zip(indices, grads):
                if self.buffers[i] is None:
                    self.buffers[i] = grad.clone()
            torch._foreach_add_(grads, [self.buffers[i] for i in indices], alpha=momentum)
            torch._foreach_add_(parameters, grads, alpha=-lr)

    def zero_grad(self):
        for parameter in self.parameters:
            parameter.grad = None

    def state_dict(self) -> dict:
        """Plain data: the momentum buffers in model order, on the CPU (None where none started yet)."""
        return {"momentum_buffers": [None if buffer is None else buffer.cpu() for buffer in self.buffers]}

    def load_state_dict(self, state: dict):
        if not isinstance(state, dict) or not isinstance(state.get("momentum_buffers"), list):
            raise UserError("the checkpoint's optimizer state is not one this project writes")
        buffers = state["momentum_buffers"]
        fits = len(buffers) == len(self.parameters) and all(
            buffer is None or (isinstance(buffer, torch.Tensor) and buffer.shape == parameter.shape)
            for buffer, parameter in zip(buffers, self.parameters))
        if not fits:
            raise UserError("the optimizer state in the checkpoint does not fit this model")
        self.buffers = [None if buffer is None else buffer.to(parameter.device)
                        for buffer, parameter in zip(buffers, self.parameters)]
