"""The network: HybridCNN, conv blocks (by default three: 10 -> 20 -> 28 channels) and a linear classifier, and
build_model, the one function every program builds its network with.

Why this shape (each choice measured: docs/performance.md, "Why the network has this shape"):
- The cost sits at full resolution. conv1 is a 5x5 convolution with stride 2 (28 -> 14), so no layer
  outputs 28x28 maps and no max-pool is needed there.
- conv2 pools *before* its BatchNorm and ReLU: max-pooling commutes with ReLU (and with BN where its
  scale is positive), so BN and ReLU touch a quarter of the values.
- Head: 28 x 6 x 6 -> 10. A larger head and a hidden classifier layer bought no accuracy.
"""
import argparse
from collections import OrderedDict

import torch
from torch import nn

from utils.flags import MAX_BLOCKS, MAX_WIDTH
from utils.cpu_speed import Dropout, conv_and_pool, keep_freed_memory

CHANNELS, DROPOUT = (10, 20, 28), 0.15  # the design's network: 17,296 parameters
BUDGET = 25_000  # parameters: the network must stay under it (python -m model --budget, the CI job)


class ConvBlock(nn.Module):
    """conv (no bias: BatchNorm cancels it) -> optional 2x2 max-pool -> BatchNorm -> ReLU."""

    def __init__(self, in_channels, out_channels, kernel=3, stride=1, padding=0, pool=False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(conv_and_pool(self.conv, self.pool, x)).relu_()  # in place: BN's backward needs its input


def conv_blocks(channels=CHANNELS) -> list[ConvBlock]:
    """One block per width: the first shrinks the digit to 14x14, the second to 6x6, every later one keeps 6x6."""
    if not buildable(channels):
        raise ValueError(f"2 to {MAX_BLOCKS} widths, each 1 to {MAX_WIDTH}, not {str(channels)[:60]}")
    return [ConvBlock(1, channels[0], kernel=5, stride=2, padding=2),  # 28 -> 14
            ConvBlock(channels[0], channels[1], pool=True),  # 14 -> 12 -> 6
            *(ConvBlock(before, width, padding=1) for before, width in zip(channels[1:], channels[2:]))]  # 6 -> 6


class Classifier(nn.Sequential):
    """Flatten -> dropout -> linear, sized for what `blocks` make of a digit: a blank one passes through them."""

    def __init__(self, blocks, dropout=DROPOUT):
        trunk = nn.Sequential(*blocks)
        training = trunk.training
        with torch.no_grad():
            features = trunk.eval()(torch.zeros(1, 1, 28, 28)).numel()  # eval: BatchNorm's statistics stay
        trunk.train(training)
        super().__init__(nn.Flatten(), Dropout(dropout), nn.Linear(features, 10))


class HybridCNN(nn.Sequential):
    """(N, 1, 28, 28) float -> (N, 10) logits: the conv blocks (children 0, 1, ...), then the Classifier.
    `blocks` replaces the blocks that `channels` describes."""

    def __init__(self, channels=CHANNELS, dropout=DROPOUT, blocks=None):
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be at least 0 and below 1, not {str(dropout)[:20]}")
        blocks = conv_blocks(channels) if blocks is None else list(blocks)
        super().__init__(*blocks, Classifier(blocks, dropout))
        keep_freed_memory()  # the CPU settings this network was measured with (utils/cpu_speed.py)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"HybridCNN expects a batch of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return super().forward(x)

    def __getitem__(self, index):  # a slice is a plain nn.Sequential: its layers take what comes out of the ones before
        return nn.Sequential(OrderedDict(list(self.named_children())[index])) if isinstance(index, slice) else \
            super().__getitem__(index)


def build_model(channels=CHANNELS, dropout=DROPOUT) -> nn.Module:
    """The network of train.py (and --resume), evaluate.py, draw.py and run_pipeline.py. Put your own here: any
    nn.Module from (N, 1, 28, 28) digits to (N, 10) logits trains, evaluates and draws; an nn.Sequential can
    also run split between an accelerator and the CPU (--split). Checkpoints record these arguments."""
    blocks = conv_blocks(channels)
    return HybridCNN(dropout=dropout, blocks=blocks)


def buildable(channels) -> bool:
    """Whether conv_blocks builds these widths: 2 to MAX_BLOCKS whole numbers, each 1 to MAX_WIDTH."""
    return (isinstance(channels, (list, tuple)) and 2 <= len(channels) <= MAX_BLOCKS
            and all(type(width) is int and 1 <= width <= MAX_WIDTH for width in channels))


def channel_list(text):
    """--channels: '8,16,32' -> (8, 16, 32)."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths separated by commas, such as 8,16,32, not {text!r}") from None
    if not buildable(widths):
        raise argparse.ArgumentTypeError(f"2 to {MAX_BLOCKS} widths, each 1 to {MAX_WIDTH}, not {text!r}")
    return widths


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def conv_widths(model: nn.Module) -> list[int]:
    """The output widths of the model's conv layers, in order: what the log and the job summary call its widths."""
    return [module.out_channels for module in model.modules() if isinstance(module, nn.Conv2d)]
