"""utils/sgd.py computes what torch.optim.SGD(nesterov=True) + OneCycleLR compute, bit for bit."""
import pytest
import torch
import torch.nn.functional as F

import train
from model import HybridCNN
from utils.errors import UserError
from utils.sgd import SGD, OneCycle

PEAK, WARMUP, STEPS, WEIGHT_DECAY = 0.2, 0.2, 150, 5e-4


def train_steps(mnist, update, frozen):
    """STEPS real training steps of batch 32 from the same start; `update(model)` makes the optimizer step.
    A frozen first block gets no gradient: both optimizers must leave it alone."""
    torch.manual_seed(0)
    model = HybridCNN()
    model.blocks[0].requires_grad_(not frozen)
    step_once = update(model)
    for step in range(STEPS):
        images = train.normalize(mnist.train_images[step * 32:(step + 1) * 32])
        F.cross_entropy(model(images), mnist.train_labels[step * 32:(step + 1) * 32]).backward()
        step_once(step)
    return model


def with_torch_optim(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=PEAK, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=PEAK, pct_start=WARMUP, total_steps=STEPS)

    def step_once(step):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    return step_once


def with_ours(model):
    optimizer, schedule = SGD(model.parameters(), WEIGHT_DECAY), OneCycle(PEAK, STEPS, WARMUP)

    def step_once(step):
        assert schedule.step == step
        optimizer.step(*schedule.values())
        optimizer.zero_grad()
        schedule.step += 1
    return step_once


@pytest.mark.parametrize("frozen", [False, True])
def test_same_weights_as_torch_optim_bit_for_bit(mnist, frozen):
    theirs, ours = train_steps(mnist, with_torch_optim, frozen), train_steps(mnist, with_ours, frozen)
    if frozen:
        torch.manual_seed(0)
        assert torch.equal(ours.blocks[0].conv.weight, HybridCNN().blocks[0].conv.weight)  # untouched, no decay
    for (name, a), b in zip(theirs.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


def test_schedule_matches_one_cycle_lr_at_every_step():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=PEAK, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=PEAK, pct_start=WARMUP, total_steps=STEPS)
    schedule = OneCycle(PEAK, STEPS, WARMUP)
    for step in range(STEPS):
        schedule.step = step
        group = optimizer.param_groups[0]
        assert schedule.values() == (group["lr"], group["momentum"]), step
        optimizer.step()
        scheduler.step()
    assert schedule.values()[0] == pytest.approx(PEAK / 25 / 1e4)


def test_state_round_trips_and_refuses_another_model():
    model = HybridCNN()
    optimizer = SGD(model.parameters(), WEIGHT_DECAY)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step(0.1, 0.9)
    restored = SGD(model.parameters(), WEIGHT_DECAY)
    restored.load_state_dict(optimizer.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(optimizer.state_dict()["momentum_buffers"],
                                                 restored.state_dict()["momentum_buffers"]))
    with pytest.raises(UserError, match="does not fit"):
        SGD(torch.nn.Linear(3, 2).parameters(), WEIGHT_DECAY).load_state_dict(optimizer.state_dict())


def test_a_restored_optimizer_takes_the_same_next_step():
    """Momentum written by state_dict and read back by load_state_dict into a fresh model and optimizer
    (as --resume does) gives the same weights after the next step as carrying on."""
    torch.manual_seed(0)
    grads = [[torch.randn_like(p) for p in HybridCNN().parameters()] for _ in range(2)]

    def step(model, optimizer, grads):
        for parameter, grad in zip(model.parameters(), grads):
            parameter.grad = grad.clone()
        optimizer.step(0.1, 0.9)

    torch.manual_seed(1)
    carried = HybridCNN()
    optimizer = SGD(carried.parameters(), WEIGHT_DECAY)
    step(carried, optimizer, grads[0])
    resumed = HybridCNN()
    resumed.load_state_dict(carried.state_dict())
    restored = SGD(resumed.parameters(), WEIGHT_DECAY)
    restored.load_state_dict(optimizer.state_dict())
    step(carried, optimizer, grads[1])
    step(resumed, restored, grads[1])
    for (name, a), b in zip(carried.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_every_parameter_starts_on_a_64_byte_boundary():
    model = HybridCNN()
    optimizer = SGD(model.parameters(), WEIGHT_DECAY)
    parameters = list(model.parameters())
    assert len(optimizer.groups) == 1 and len(optimizer.groups[0].members) == len(parameters)
    assert all(parameter.data_ptr() % 64 == 0 for parameter in parameters)
    flat = optimizer.groups[0].values
    assert all(parameter.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for parameter in parameters)
