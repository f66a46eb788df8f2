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
    gradient. Parameters that do not require a gradient when the optimizer is made are left alone; one
    that does but got none in a step counts as having a zero gradient (HybridCNN's always get one).

    The trainable parameters of each device move into one flat tensor, each parameter becoming a view of
    its part (so move the model before making the optimizer), and a step is six tensor operations per
    device rather than six per parameter (66 here): 1-3% of a training step on a 2-core CPU."""

    def __init__(self, parameters, weight_decay):
        self.parameters = list(parameters)
        self.weight_decay = weight_decay
        by_device = {}
        for parameter in self.parameters:
            if parameter.requires_grad:
                by_device.setdefault(parameter.device, []).append(parameter)
        self.groups = [Flat(members) for members in by_device.values()]

    @torch.no_grad()
    def step(self, lr, momentum):
        for group in self.groups:
            grad = group.gather([torch.zeros_like(p) if p.grad is None else p.grad for p in group.members])
            grad.add_(group.values, alpha=self.weight_decay)
            if group.momentum is None:
                group.momentum = grad.clone()
            else:
                group.momentum.mul_(momentum).add_(grad)
            group.values.add_(grad.add_(group.momentum, alpha=momentum), alpha=-lr)

    def zero_grad(self):
        for parameter in self.parameters:
            parameter.grad = None

    def state_dict(self) -> dict:
        """Plain data: the momentum buffers in model order, on the CPU (None where none started yet)."""
        buffers = {}
        for group in self.groups:
            if group.momentum is not None:
                parts = group.split(group.momentum)
                buffers |= {id(p): part.to("cpu", copy=True) for p, part in zip(group.members, parts)}
        return {"momentum_buffers": [buffers.get(id(parameter)) for parameter in self.parameters]}

    def load_state_dict(self, state: dict):
        if not isinstance(state, dict) or not isinstance(state.get("momentum_buffers"), list):
            raise UserError("the checkpoint's optimizer state is not one this project writes")
        buffers = state["momentum_buffers"]
        fits = len(buffers) == len(self.parameters) and all(
            buffer is None or (isinstance(buffer, torch.Tensor) and buffer.shape == parameter.shape)
            for buffer, parameter in zip(buffers, self.parameters))
        if not fits:
            raise UserError("the optimizer state in the checkpoint does not fit this model")
        saved = {id(parameter): buffer for parameter, buffer in zip(self.parameters, buffers)}
        for group in self.groups:
            parts = [saved[id(p)] for p in group.members]
            if all(part is None for part in parts):
                group.momentum = None
            else:  # a buffer not started yet is a zero one: the next step makes it the gradient either way
                group.momentum = group.gather([torch.zeros_like(p) if part is None else part.to(p)
                                               for p, part in zip(group.members, parts)])


ALIGNMENT = 16  # elements (64 bytes of float32): where each parameter's view starts in the flat tensor


class Flat:
    """Parameters of one device moved into one flat tensor, `values`: each becomes a view of its part. Each
    part starts at a multiple of ALIGNMENT elements, the gaps between them hold zeros: a view at an odd
    offset (conv2.weight started at byte 1080) rules out some cuDNN and cuBLASLt kernels, and MPS has had
    silent bugs with offset views."""

    def __init__(self, members):
        self.members = members
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
        self.momentum = None  # flat too, once the first step starts it

    def gather(self, tensors):
        """One tensor per member (a gradient, say) -> a new flat tensor in this layout: one concatenation."""
        pieces = []
        for tensor, gap in zip(tensors, self.gaps):
            pieces += [tensor.reshape(-1), gap] if len(gap) else [tensor.reshape(-1)]
        return torch.cat(pieces)

    def split(self, flat):
        return [flat[start:start + p.numel()].view_as(p) for start, p in zip(self.offsets, self.members)]
