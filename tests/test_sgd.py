"""utils/sgd.py computes what torch.optim.SGD(nesterov=True) + OneCycleLR compute, bit for bit, through
torch.optim's interface: param_groups, step(), zero_grad(), state_dict() in torch.optim.SGD's format."""
import pytest
import torch
import torch.nn.functional as F

import train
from model import HybridCNN
from utils.errors import UserError
from utils.sgd import SGD, OneCycle

PEAK, WARMUP, STEPS, WEIGHT_DECAY = 0.2, 0.2, 60, 5e-4


def train_steps(mnist, make, frozen=False):
    """STEPS real training steps of batch 32 from the same start, with the optimizer and schedule `make(model)`
    returns. A frozen first block gets no gradient: both optimizers must leave it alone."""
    torch.manual_seed(0)
    model = HybridCNN()
    model.blocks[0].requires_grad_(not frozen)
    optimizer, schedule = make(model)
    for step in range(STEPS):
        images = train.normalize(mnist.train_images[step * 32:(step + 1) * 32])
        F.cross_entropy(model(images), mnist.train_labels[step * 32:(step + 1) * 32]).backward()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
    return model


def torch_optim(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=PEAK, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=PEAK, pct_start=WARMUP, total_steps=STEPS)


def ours(model):
    optimizer = SGD(model.parameters(), PEAK, weight_decay=WEIGHT_DECAY)
    return optimizer, OneCycle(optimizer, PEAK, STEPS, WARMUP)


@pytest.mark.parametrize("frozen", [False, True])
def test_same_weights_as_torch_optim_bit_for_bit(mnist, frozen):
    theirs, mine = train_steps(mnist, torch_optim, frozen), train_steps(mnist, ours, frozen)
    if frozen:
        torch.manual_seed(0)
        assert torch.equal(mine.blocks[0].conv.weight, HybridCNN().blocks[0].conv.weight)  # untouched, no decay
    for (name, a), b in zip(theirs.state_dict().items(), mine.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("optimizer_class", [SGD, torch.optim.SGD, torch.optim.Adam])
def test_the_schedule_writes_one_cycle_lr_s_values_into_any_optimizer(optimizer_class):
    """OneCycle drives our SGD, torch's SGD and Adam (its first beta as the momentum) as OneCycleLR does."""
    parameter = torch.nn.Parameter(torch.zeros(3))
    options = {} if optimizer_class is torch.optim.Adam else {"momentum": 0.9}
    reference = torch.optim.SGD([parameter], lr=PEAK, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=PEAK, pct_start=WARMUP, total_steps=STEPS)
    driven = optimizer_class([torch.nn.Parameter(torch.zeros(3))], lr=PEAK, **options)
    schedule = OneCycle(driven, PEAK, STEPS, WARMUP)
    for step in range(STEPS):
        group, expected = driven.param_groups[0], reference.param_groups[0]
        momentum = group["betas"][0] if optimizer_class is torch.optim.Adam else group["momentum"]
        assert (group["lr"], momentum) == (expected["lr"], expected["momentum"]), step
        schedule.step()
        reference.step()  # no gradient: nothing moves; torch's scheduler wants a step before its own
        scheduler.step()
    assert driven.param_groups[0]["lr"] == pytest.approx(PEAK / 25 / 1e4)


def test_state_is_torch_optim_sgd_s_format_both_ways():
    """A state ours writes loads into torch.optim.SGD and back, and each takes the same next step from it."""
    torch.manual_seed(0)
    model, twin = HybridCNN(), HybridCNN()
    twin.load_state_dict(model.state_dict())
    optimizer = SGD(model.parameters(), 0.1, weight_decay=WEIGHT_DECAY)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    twin.load_state_dict(model.state_dict())
    theirs = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY)
    theirs.load_state_dict(optimizer.state_dict())
    back = SGD(HybridCNN().parameters(), 0.1)
    back.load_state_dict(theirs.state_dict())
    assert all(torch.equal(a["momentum_buffer"], b["momentum_buffer"])
               for a, b in zip(optimizer.state_dict()["state"].values(), back.state_dict()["state"].values()))
    assert back.param_groups[0]["weight_decay"] == WEIGHT_DECAY  # the saved settings come back, as torch's do
    grads = [torch.randn_like(parameter) for parameter in model.parameters()]
    for net, opt in ((model, optimizer), (twin, theirs)):
        for parameter, grad in zip(net.parameters(), grads):
            parameter.grad = grad.clone()
        opt.step()
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_state_that_does_not_fit_is_one_line_and_the_earlier_format_still_loads():
    model = HybridCNN()
    optimizer = SGD(model.parameters(), 0.1)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    with pytest.raises(UserError, match="does not fit"):
        SGD(torch.nn.Linear(3, 2).parameters(), 0.1).load_state_dict(optimizer.state_dict())
    with pytest.raises(UserError, match="does not fit"):
        SGD(model.parameters(), 0.1).load_state_dict(optimizer.state_dict() | {"param_groups": [{"lr": "fast"}]})
    earlier = {"momentum_buffers": [entry["momentum_buffer"] for entry in optimizer.state_dict()["state"].values()]}
    restored = SGD(model.parameters(), 0.1)
    restored.load_state_dict(earlier)
    assert all(torch.equal(a["momentum_buffer"], b["momentum_buffer"])
               for a, b in zip(optimizer.state_dict()["state"].values(), restored.state_dict()["state"].values()))


def test_a_restored_optimizer_takes_the_same_next_step():
    """Momentum written by state_dict and read back by load_state_dict into a fresh model and optimizer
    (as --resume does) gives the same weights after the next step as carrying on."""
    torch.manual_seed(0)
    grads = [[torch.randn_like(p) for p in HybridCNN().parameters()] for _ in range(2)]

    def step(model, optimizer, grads):
        for parameter, grad in zip(model.parameters(), grads):
            parameter.grad = grad.clone()
        optimizer.step()

    torch.manual_seed(1)
    carried = HybridCNN()
    optimizer = SGD(carried.parameters(), 0.1, weight_decay=WEIGHT_DECAY)
    step(carried, optimizer, grads[0])
    resumed = HybridCNN()
    resumed.load_state_dict(carried.state_dict())
    restored = SGD(resumed.parameters(), 0.1, weight_decay=WEIGHT_DECAY)
    restored.load_state_dict(optimizer.state_dict())
    step(carried, optimizer, grads[1])
    step(resumed, restored, grads[1])
    for (name, a), b in zip(carried.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_model_cast_after_the_optimizer_was_made_keeps_training():
    """model.double() once the optimizer exists gives the parameters new tensors: the step after it still moves
    them, as torch.optim.SGD moves a model cast the same way, momentum included."""
    torch.manual_seed(0)
    model, twin = HybridCNN(), HybridCNN()
    twin.load_state_dict(model.state_dict())
    grads = [[torch.randn_like(p, dtype=torch.float64) for p in model.parameters()] for _ in range(2)]
    optimizer = SGD(model.parameters(), 0.1)
    theirs = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for step, grad in enumerate(grads):
        for net, opt in ((model, optimizer), (twin, theirs)):
            if step == 1:
                net.double()
            for parameter, g in zip(net.parameters(), grad):
                parameter.grad = g.to(parameter.dtype)
            opt.step()
    assert all(parameter.dtype == torch.float64 for parameter in model.parameters())
    for (name, a), b in zip(twin.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name


def test_step_takes_a_closure_and_zero_grad_can_keep_the_tensors():
    parameter = torch.nn.Parameter(torch.ones(2))
    optimizer = SGD([parameter], 0.5, momentum=0.0)
    loss = optimizer.step(lambda: (parameter ** 2).sum().backward() or torch.tensor(2.0))
    assert loss.item() == 2.0 and torch.equal(parameter.detach(), torch.zeros(2))  # 1 - 0.5 * 2
    grad = parameter.grad
    optimizer.zero_grad(set_to_none=False)
    assert parameter.grad is grad and torch.equal(grad, torch.zeros(2))


def test_every_parameter_starts_on_a_64_byte_boundary():
    model = HybridCNN()
    optimizer = SGD(model.parameters(), 0.1)
    parameters = list(model.parameters())
    assert len(optimizer.flats) == 1 and len(optimizer.flats[0].members) == len(parameters)
    assert all(parameter.data_ptr() % 64 == 0 for parameter in parameters)
    flat = optimizer.flats[0].values
    assert all(parameter.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for parameter in parameters)
