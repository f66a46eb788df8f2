"""The device paths that training really uses, on every placement this machine has: the CPU cases run
everywhere, the CUDA and MPS ones (marked `cuda`, `mps`) where that device is present."""
import pytest
import torch
import torch.nn.functional as F
from tqdm import tqdm

import train
from model import HybridCNN, resolve_placement
from utils.sgd import SGD, OneCycle

from conftest import on, synchronize

PLACEMENTS = [on("single", "cpu"), on("hybrid", "cuda"), on("single", "cuda"), on("hybrid", "mps"), on("single", "mps")]


@pytest.mark.parametrize("mode, device", PLACEMENTS)
def test_the_loss_reads_every_label_after_it_has_landed(mode, device, small_mnist, monkeypatch):
    """A probe in the loss: what each step's target held when the loss read it must be what it holds after a
    sync (a copy still in flight reads stale or zero labels, with no error), and the epoch's targets must be
    its labels, each once."""
    model = HybridCNN(resolve_placement(mode, device))
    images = small_mnist.train_images.to(model.input_device)
    labels = small_mnist.train_labels.to(model.output_device)
    read, cross_entropy = [], F.cross_entropy

    def probe(logits, target, **options):
        read.append((target, target.clone()))  # the clone is what the loss reads at this moment
        return cross_entropy(logits, target, **options)

    monkeypatch.setattr(F, "cross_entropy", probe)
    config = train.Config()
    schedule = OneCycle(config.lr, -(-len(labels) // config.batch_size), config.warmup)
    train.train_one_epoch(model, SGD(model.parameters(), config.weight_decay), schedule, images, labels, config,
                          torch.Generator().manual_seed(0), tqdm(disable=True))
    synchronize(device)
    landed = torch.cat([target for target, _ in read]).cpu()
    assert torch.equal(torch.cat([copy for _, copy in read]).cpu(), landed)
    assert all(target.device == model.output_device for target, _ in read)
    assert torch.equal(landed.bincount(minlength=10), small_mnist.train_labels.bincount(minlength=10))
