"""HybridCNN: conv blocks (by default three: 10 -> 20 -> 28 channels) and a linear classifier.

Why this shape (each choice measured: docs/performance.md, "Why the network has this shape"):
- The cost sits at full resolution. conv1 is a 5x5 convolution with stride 2 (28 -> 14), so no layer
  outputs 28x28 maps and no max-pool is needed there; each 5x5 output sees more of the digit than a
  3x3 convolution and a pool did, for a faster step at the same accuracy.
- conv2 pools *before* its BatchNorm and ReLU: max-pooling commutes with ReLU (and with BN where its
  scale is positive), so BN and ReLU touch a quarter of the values.
- Head: 28 x 6 x 6 -> 10. A larger head and a hidden classifier layer bought no accuracy, so the rest of
  the 25k budget is left unspent. conv1 keeps its padding: without it the work shrinks, and the accuracy too.
- On the CPU, ConvBlock runs its conv and pool channels-last and Dropout draws its mask four elements per
  random number: a faster training step for the same function (tests/test_layers.py).
"""
import argparse
import math

import torch
from torch import nn

from model.placement import Placement, make_reproducible, to_device
from utils.errors import UserError


class ConvBlock(nn.Module):
    """conv (no bias: BatchNorm cancels it) -> optional 2x2 max-pool -> BatchNorm -> ReLU.

    On the CPU, a conv of several input channels and its pool run on a channels-last copy of the input:
    there oneDNN's conv backward and PyTorch's 2x2 max-pool forward are faster, while BatchNorm is several
    times slower, so it gets the usual layout back. Each gradient goes back in its forward's layout
    (Relayout): the max-pool's backward, for one, is slow when handed the other layout. conv1's single input
    channel gains nothing there, so it skips the two copies.
    """

    def __init__(self, in_channels, out_channels, kernel=3, stride=1, padding=0, pool=False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn = nn.BatchNorm2d(out_channels)

    def output_side(self, side: int) -> int:
        """The height (and width) of the maps this block makes from square maps of `side` pixels."""
        (kernel, _), (stride, _), (padding, _) = self.conv.kernel_size, self.conv.stride, self.conv.padding
        side = (side + 2 * padding - kernel) // stride + 1
        return side // 2 if isinstance(self.pool, nn.MaxPool2d) else side

    def forward(self, x):
        if x.device.type == "cpu" and self.conv.in_channels > 1:
            x = relayout(self.pool(self.conv(relayout(x, torch.channels_last))), torch.contiguous_format)
        else:
            x = self.pool(self.conv(x))
        return self.bn(x).relu_()  # in place: BatchNorm's backward needs its input, not its output


class Relayout(torch.autograd.Function):
    """x.contiguous(memory_format=...), whose gradient is handed back in x's own layout."""

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
    probability within 1/32768 of 1 - p): the CPU generator draws one number at a time, and one draw per
    element made the mask cost as much as conv3's forward."""

    def forward(self, x):
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        draws = torch.empty(x.numel() // 4 + 1, dtype=torch.int64).random_()  # 63 random bits each
        fifteen_bits = draws.view(torch.int16)[: x.numel()].view(x.shape) & 0x7FFF
        keep = fifteen_bits < round((1 - self.p) * 2**15)
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))  # a float mask: multiplying by a bool one is slower


# Test-time augmentation: what log_probabilities() averages over, as (rows, columns) moves: the image itself
# and its four one-pixel shifts (more accurate than the image alone; the eight shifts of the 3x3
# neighbourhood gave no more).
SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))


CHANNELS, DROPOUT = (10, 20, 28), 0.15  # the design's network: 17,296 parameters, under the 25,000 budget
BUDGET = 25_000  # parameters: the network must stay under it (python -m model --budget, the CI job)
MAX_BLOCKS, MAX_WIDTH = 5, 1024  # the most a checkpoint may ask to build: far past any budget here


def buildable(channels) -> bool:
    """Whether HybridCNN builds these conv blocks' widths: 2 to MAX_BLOCKS whole numbers, each 1 to MAX_WIDTH.
    The one rule for the constructor, the --channels flag and a checkpoint's record."""
    return 2 <= len(channels) <= MAX_BLOCKS and all(type(width) is int and 1 <= width <= MAX_WIDTH
                                                    for width in channels)


def channel_list(text):
    """'8,16,32' -> (8, 16, 32): the conv blocks' widths, 2 to MAX_BLOCKS of them."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths separated by commas, such as 8,16,32, not {text!r}") from None
    if not buildable(widths):
        raise argparse.ArgumentTypeError(f"2 to {MAX_BLOCKS} widths, each 1 to {MAX_WIDTH}, not {text!r}")
    return widths


class HybridCNN(nn.Module):
    """(N, 1, 28, 28) float -> (N, 10) logits. With no placement, everything runs on the CPU.
    log_probabilities() gives the class probabilities that every figure and prediction of this project uses.

    `channels` gives each conv block's width, 2 to 5 of them: the first block shrinks the digit to 14x14, the
    second to 6x6 (conv and pool), every later one keeps 6x6. The blocks run in the order of `self.blocks`,
    so a block appended there runs; the classifier's input size follows from the last block's output."""

    def __init__(self, placement: Placement | None = None, channels=CHANNELS, dropout=DROPOUT):
        super().__init__()
        channels = tuple(channels)
        if not buildable(channels):
            raise UserError(f"channels must be 2 to {MAX_BLOCKS} conv blocks' widths, each 1 to {MAX_WIDTH}, "
                            f"not {str(channels)[:60]}")
        if not 0 <= dropout < 1:
            raise UserError(f"dropout must be at least 0 and below 1, not {str(dropout)[:20]}")
        self.arguments = {"channels": list(channels), "dropout": dropout}  # what a checkpoint records to rebuild it
        self.blocks = nn.ModuleList(
            [ConvBlock(1, channels[0], kernel=5, stride=2, padding=2),  # 28 -> 14
             ConvBlock(channels[0], channels[1], pool=True)]  # 14 -> 12 -> 6
            + [ConvBlock(channels[i - 1], channels[i], padding=1) for i in range(2, len(channels))])  # 6 -> 6
        side = 28
        for block in self.blocks:
            side = block.output_side(side)
        self.fc = nn.Sequential(nn.Flatten(), Dropout(dropout), nn.Linear(channels[-1] * side * side, 10))
        self.place(placement or Placement())

    def block_names(self) -> list[str]:
        return [f"conv{number}" for number in range(1, len(self.blocks) + 1)] + ["fc"]

    def place(self, placement: Placement) -> "HybridCNN":
        """Move each stage to its device: the first `placement.split` conv blocks, then the rest and the
        classifier."""
        if placement.split > len(self.blocks):
            raise UserError(f"split {placement.split}: this network has {len(self.blocks)} conv blocks, so the "
                            f"early stage holds 1 to {len(self.blocks)} of them")
        self.placement = placement
        for device, stage in self.stages:
            make_reproducible(device)
            for module in stage:
                module.to(device)
        return self

    @property
    def stages(self) -> list[tuple[torch.device, list[nn.Module]]]:
        """(device, modules) of the early stage, then the late one: the blocks in order, then the classifier."""
        modules, split = [*self.blocks, self.fc], self.placement.split
        early, late = torch.device(self.placement.early), torch.device(self.placement.late)
        return [(early, modules[:split]), (late, modules[split:])]

    def describe_placement(self) -> str:
        """For example: conv1,conv2 -> cuda:0 | conv3,fc -> cpu"""
        names, split, placement = self.block_names(), self.placement.split, self.placement
        return f"{','.join(names[:split])} -> {placement.early} | {','.join(names[split:])} -> {placement.late}"

    @property
    def input_device(self) -> torch.device:
        return self.stages[0][0]

    @property
    def output_device(self) -> torch.device:
        return self.stages[1][0]

    def forward(self, x):
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"HybridCNN expects a batch of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        for device, modules in self.stages:
            x = to_device(x, device)  # overlaps with compute only from host to CUDA
            for module in modules:
                x = module(x)
        return x

    @torch.no_grad()
    def log_probabilities(self, x):
        """The logarithm of the class probabilities, on the output device: the softmax averaged over the image
        and its four one-pixel shifts (SHIFTS), in one batch, computed in log space (no log of 0). MNIST digits
        sit inside an empty border of 4 pixels, so rolling an image by one pixel moves the digit and wraps only
        background around. Call it in eval mode."""
        views = torch.cat([torch.roll(x, shift, dims=(2, 3)) for shift in SHIFTS])
        each = self(views).log_softmax(1).view(len(SHIFTS), len(x), -1)
        return torch.logsumexp(each, 0) - math.log(len(SHIFTS))

    def extra_repr(self):
        return f"placement: {self.describe_placement()}"


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
