"""The CPU speed tricks the network runs with (utils/cpu_speed.py) compute what the plain PyTorch layers compute."""
import pytest
import torch

from model.network import ConvBlock
from utils.cpu_speed import Dropout


@pytest.mark.parametrize("block, shape", [
    (lambda: ConvBlock(1, 10, kernel=5, stride=2, padding=2), (64, 1, 28, 28)),
    (lambda: ConvBlock(10, 20, pool=True), (64, 10, 14, 14)),
    (lambda: ConvBlock(20, 28, padding=1), (64, 20, 6, 6)),
])
def test_channels_last_block_equals_plain_layers(block, shape):
    torch.manual_seed(0)
    block = block()
    x = torch.randn(shape, requires_grad=True)
    fast = block(x)
    fast_grads = torch.autograd.grad(fast.square().sum(), [x, block.conv.weight, block.bn.weight])
    plain = torch.relu(block.bn(block.pool(block.conv(x))))  # the usual NCHW layout all through
    plain_grads = torch.autograd.grad(plain.square().sum(), [x, block.conv.weight, block.bn.weight])
    assert fast.is_contiguous() and fast.shape == plain.shape
    assert fast_grads[0].is_contiguous()  # handed back in the input's layout (Relayout)
    torch.testing.assert_close(fast, plain)
    for fast_grad, plain_grad in zip(fast_grads, plain_grads):
        torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-3, atol=1e-3)  # sums of 10^5 terms


def test_dropout_keeps_one_minus_p_of_each_position_and_rescales():
    torch.manual_seed(0)
    dropout, ones = Dropout(0.15), torch.ones(2000, 1000)
    out = dropout(ones)
    kept = out != 0
    # 2M draws: the standard error of a kept fraction is 0.00025 overall, 0.0005 for each quarter
    assert abs(kept.double().mean().item() - 0.85) < 0.002
    for lane in range(4):  # the four 15-bit fields of each 64-bit draw are each uniform
        assert abs(kept.flatten()[lane::4].double().mean().item() - 0.85) < 0.003, lane
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.85))
    assert not torch.equal(kept, dropout(ones) != 0)  # a fresh mask each call


def test_dropout_is_seeded_and_off_at_evaluation():
    dropout, x = Dropout(0.15), torch.randn(64, 1008)
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x))
    dropout.eval()
    assert torch.equal(dropout(x), x)
    assert torch.equal(Dropout(0.0)(x), x)


def test_dropout_gradient_flows_through_kept_elements_only():
    torch.manual_seed(0)
    x = torch.randn(64, 1008, requires_grad=True)
    out = Dropout(0.15)(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    expected = (out != 0).float() / 0.85
    torch.testing.assert_close(grad, expected)
