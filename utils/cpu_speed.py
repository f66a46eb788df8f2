"""The CPU speed tricks the design's network runs with: the same numbers as the plain PyTorch layers
(tests/test_layers.py), in less time. Each gain was measured on a 2-core CPU (docs/performance.md, "Where the
CPU time goes"); on an accelerator each falls back to the plain layer.

- conv_and_pool: channels-last conv and max-pool, 18% off a training step together with the dropout mask.
- Dropout: a cheaper mask (the CPU generator draws one number per element: nn.Dropout's mask cost as much
  as conv3's forward).
- keep_freed_memory: glibc's malloc keeps a step's freed activations, a seventh of the page faults, the
  training loop 6.86 s -> 5.58 s.
"""
import ctypes
import ctypes.util

import torch
from torch import nn


def conv_and_pool(conv: nn.Conv2d, pool: nn.Module, x):
    """pool(conv(x)). On the CPU, a conv of several input channels and its pool run on a channels-last copy:
    oneDNN's conv backward is about a quarter faster there and the 2x2 max-pool forward 5x, while the
    BatchNorm after them is several times slower, so the result gets the usual layout back. conv1's single
    input channel gains nothing, so it skips the two copies."""
    if x.device.type != "cpu" or conv.in_channels == 1:
        return pool(conv(x))
    return relayout(pool(conv(relayout(x, torch.channels_last))), torch.contiguous_format)


class Relayout(torch.autograd.Function):
    """x.contiguous(memory_format=...), whose gradient goes back in x's own layout: handed the other one, the
    max-pool's backward takes 4x as long."""

    @staticmethod
    def forward(ctx, x, memory_format):
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        ctx.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=ctx.memory_format), None


relayout = Relayout.apply


class Dropout(nn.Dropout):
    """nn.Dropout, with the CPU mask drawn four elements per 64-bit random number (15 bits each, keep
    probability within 1/32768 of 1 - p)."""

    def forward(self, x):
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        draws = torch.empty(x.numel() // 4 + 1, dtype=torch.int64).random_()  # 63 random bits each
        fifteen_bits = draws.view(torch.int16)[: x.numel()].view(x.shape) & 0x7FFF
        keep = fifteen_bits < round((1 - self.p) * 2**15)
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))  # a float mask: multiplying by a bool one is slower


# glibc serves blocks over its mmap threshold with fresh pages from the kernel and trims the heap's free top:
# a step allocates and frees activations of up to about 2 MB, so every step page-faulted them in again
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters, from glibc's malloc.h
ALLOCATOR = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for training, for a few tens of MB held. Elsewhere (macOS, musl): False."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in ALLOCATOR)
