"""HybridCNN: three 3x3 conv blocks (10 -> 20 -> 28 channels) and a linear classifier, 17,136 parameters.

Design, measured on a 2-core CPU (one epoch, batch 64, SGD + one-cycle; test accuracy over seeds 1-3):
- The cost sits at full resolution, so conv1 is unpadded (28 -> 26) and each early block pools
  *before* its BatchNorm and ReLU: max-pooling commutes with ReLU (and with BN where its scale is
  positive), so the network computes the same kind of function while BN and ReLU touch a quarter
  of the values. Pool-first with an unpadded conv1 ran an epoch in about 6.2 s against 8.7 s for
  the textbook conv-BN-ReLU-pool with padding everywhere (interleaved timing, median of 10 rounds).
- Accuracy: 99.06% mean for this head (28 x 6 x 6 -> 10, 17.1k parameters) against 98.96% for a
  larger 28 x 7 x 7 head (20.8k) and 98.99% for a smaller 28 x 5 x 5 one (14.1k). A hidden layer
  in the classifier (21.3k) bought nothing (98.98%), so the budget stays unspent rather than wasted.
"""
import torch
from torch import nn

from model.placement import BLOCKS, Placement


class ConvBlock(nn.Module):
    """3x3 conv (no bias: BatchNorm cancels it) -> optional 2x2 max-pool -> BatchNorm -> ReLU."""

    def __init__(self, in_channels, out_channels, padding, pool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=padding, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return torch.relu(self.bn(self.pool(self.conv(x))))


class HybridCNN(nn.Module):
    """(N, 1, 28, 28) float -> (N, 10) logits. With no placement, everything runs on the CPU."""

    def __init__(self, placement: Placement | None = None, dropout=0.15):
        super().__init__()
        self.conv1 = ConvBlock(1, 10, padding=0, pool=True)  # 28 -> 26 -> 13
        self.conv2 = ConvBlock(10, 20, padding=1, pool=True)  # 13 -> 13 -> 6
        self.conv3 = ConvBlock(20, 28, padding=1, pool=False)  # 6 -> 6
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(28 * 6 * 6, 10))
        self.place(placement or Placement())

    def place(self, placement: Placement) -> "HybridCNN":
        """Move each stage to its device. The split point is data: Placement(..., split=3) moves conv3 too."""
        blocks = [getattr(self, name) for name in BLOCKS]
        self.stages = [(torch.device(placement.early), blocks[: placement.split]),
                       (torch.device(placement.late), blocks[placement.split:])]
        for device, modules in self.stages:
            for module in modules:
                module.to(device)
        self.placement = placement
        return self

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
            # Host-to-accelerator copies may overlap with compute; a copy back to the host must not
            # (the CPU would read the tensor before it arrives), so that one blocks.
            x = x.to(device, non_blocking=device.type != "cpu")
            for module in modules:
                x = module(x)
        return x

    def extra_repr(self):
        return f"placement: {self.placement.describe()}"


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
