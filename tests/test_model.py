"""The seven model checks of the original repos, each on the real network and, where it matters, the
real trained model and real test digits.

Each check is a function, so the last tests can feed the same functions broken models (constant
logits, a layer cut off from the gradient, batch statistics at evaluation) and show that the checks
catch them.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model import HybridCNN, count_parameters
from model.predict import MEAN, STD, evaluate, normalize
from utils.errors import run_cli

BUDGET = 25_000
NOISE = 0.1  # standard deviation of the Gaussian noise, as a fraction of the pixel range


def check_parameter_budget(model):
    assert count_parameters(model) < BUDGET, f"{count_parameters(model):,} parameters"


def check_test_accuracy(model, mnist, minimum=95.0):
    _, accuracy, _ = evaluate(model, mnist.test_images, mnist.test_labels)
    assert accuracy > minimum, f"test accuracy {accuracy:.2f}%"


def check_batch_equals_one_by_one(model, images):
    model.eval()
    with torch.no_grad():
        batched = model(images)
        single = torch.cat([model(image[None]) for image in images])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def check_gradient_flow(model, images, labels):
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    starved = [name for name, parameter in model.named_parameters()
               if parameter.grad is None or not parameter.grad.abs().sum() > 0]
    assert not starved, f"no gradient reaches {', '.join(starved)}"


def check_noise_robustness(model, mnist, minimum=95.0):
    """Gaussian noise (std 0.1 of the pixel range, clipped to it) on all 10,000 test digits: predictions must
    agree with the clean ones on at least 95% of digits, and still be right on at least 95%. Agreement
    alone would pass a model that ignores its input."""
    clean_pixels = mnist.test_images.float() / 255
    noise = torch.randn(clean_pixels.shape, generator=torch.Generator().manual_seed(0)) * NOISE
    noisy_pixels = (clean_pixels + noise).clamp(0, 1)
    model.eval()
    clean, noisy = predictions(model, clean_pixels), predictions(model, noisy_pixels)
    agreement = (clean == noisy).double().mean().item() * 100
    noisy_accuracy = (noisy == mnist.test_labels).double().mean().item() * 100
    assert agreement >= minimum, f"predictions agree on only {agreement:.2f}% of noisy digits"
    assert noisy_accuracy >= minimum, f"only {noisy_accuracy:.2f}% right on noisy digits"


@torch.no_grad()
def predictions(model, pixels):
    """The digit predicted for each image (pixels from 0 to 1), in blocks of 1,000: all at once take twice as long."""
    return torch.cat([model(block) for block in ((pixels - MEAN) / STD).split(1000)]).argmax(1)


def normalized_test_digits(mnist, count):
    return normalize(mnist.test_images[:count]), mnist.test_labels[:count]


# 1 to 7: the checks on the real model

def test_1_fewer_than_25000_parameters():
    check_parameter_budget(HybridCNN())


def test_the_design_three_conv_blocks_growing_10_20_28_with_batchnorm_and_dropout_0_15():
    model = HybridCNN()
    assert [(conv.in_channels, conv.out_channels) for conv in model.modules() if isinstance(conv, nn.Conv2d)] == \
        [(1, 10), (10, 20), (20, 28)]
    assert [norm.num_features for norm in model.modules() if isinstance(norm, nn.BatchNorm2d)] == [10, 20, 28]
    assert [dropout.p for dropout in model.modules() if isinstance(dropout, nn.Dropout)] == [0.15]
    assert count_parameters(model) == 17_296


@pytest.mark.parametrize("batch", [1, 2, 64])
def test_2_takes_28x28_digits(batch):
    model = HybridCNN().eval()
    assert model(torch.rand(batch, 1, 28, 28)).shape[0] == batch


@pytest.mark.parametrize("shape", [(4, 3, 28, 28), (4, 1, 32, 32), (1, 28, 28), (4, 1, 28)])
def test_2_refuses_other_shapes_clearly(shape):
    with pytest.raises(ValueError, match=r"expects a batch of shape \(N, 1, 28, 28\)"):
        HybridCNN().eval()(torch.rand(shape))


def test_3_ten_output_classes(trained_model, mnist):
    images, _ = normalized_test_digits(mnist, 1000)
    with torch.no_grad():
        logits = trained_model(images)
    assert logits.shape == (1000, 10)
    assert set(logits.argmax(1).tolist()) == set(range(10))  # and the trained model uses all ten


def test_4_above_95_percent_after_one_real_epoch(trained_model, mnist):
    check_test_accuracy(trained_model, mnist)


def test_5_batch_outputs_equal_one_by_one(trained_model, mnist):
    check_batch_equals_one_by_one(trained_model, normalized_test_digits(mnist, 64)[0])


def test_6_every_parameter_gets_a_gradient(mnist):
    torch.manual_seed(0)
    check_gradient_flow(HybridCNN(), *normalized_test_digits(mnist, 64))


def test_7_robust_to_input_noise(trained_model, mnist):
    check_noise_robustness(trained_model, mnist)


def test_the_budget_check_passes_only_under_the_budget(capsys):
    """python -m model --budget N: the count must be under N; at N it is over."""
    from model.__main__ import main

    parameters = count_parameters(HybridCNN())
    assert run_cli(main, ["--budget", str(parameters + 1)]) == 0
    assert f"parameters: {parameters:,} (budget: under {parameters + 1:,}): ok" in capsys.readouterr().out
    assert run_cli(main, ["--budget", str(parameters)]) == 1
    assert f"parameters: {parameters:,} (budget: under {parameters:,}): OVER BUDGET" in capsys.readouterr().out


def test_predictions_average_the_softmax_over_the_digit_and_its_four_one_pixel_shifts(trained_model, mnist):
    """What every figure and prediction uses (model.predict.evaluate): probabilities that sum to 1, the mean of the five
    views' softmax, and the loss and accuracy of those."""
    images, labels = mnist.test_images[:500], mnist.test_labels[:500]
    loss, accuracy, probabilities = evaluate(trained_model, images, labels)
    pixels = normalize(images)
    views = [pixels, pixels.roll(1, 3), pixels.roll(-1, 3), pixels.roll(1, 2), pixels.roll(-1, 2)]
    trained_model.eval()
    with torch.no_grad():
        expected = torch.stack([trained_model(view).softmax(1) for view in views]).mean(0)
    torch.testing.assert_close(probabilities, expected, atol=1e-5, rtol=1e-4)
    assert loss == pytest.approx(F.nll_loss(expected.log(), labels).item(), rel=1e-4)
    assert accuracy == pytest.approx((expected.argmax(1) == labels).double().mean().item() * 100)


# The same checks catch broken models

class ConstantLogits(nn.Module):
    """Ignores its input: the same (trainable) logits for every digit."""

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.0, 0.1, 0, 0, 0, 0, 0, 0, 0, 0]))

    def forward(self, x):
        return self.logits.expand(len(x), 10)


def test_constant_logits_fail_checks_4_and_7(mnist):
    with pytest.raises(AssertionError, match="test accuracy"):
        check_test_accuracy(ConstantLogits(), mnist)
    with pytest.raises(AssertionError, match="right on noisy digits"):
        check_noise_robustness(ConstantLogits(), mnist)


def test_batch_statistics_at_evaluation_fail_check_5(trained_model, mnist):
    broken = HybridCNN()
    broken.load_state_dict(trained_model.state_dict())
    broken[2].bn.track_running_stats = False  # normalizes with each batch's own statistics
    broken[2].bn.running_mean = broken[2].bn.running_var = None
    with pytest.raises(AssertionError, match="not close"):
        check_batch_equals_one_by_one(broken, normalized_test_digits(mnist, 64)[0])


def test_a_layer_cut_off_from_the_gradient_fails_check_6(mnist):
    broken = HybridCNN()
    broken[0].register_forward_hook(lambda module, inputs, output: output.detach())
    with pytest.raises(AssertionError, match="no gradient reaches 0.conv.weight"):
        check_gradient_flow(broken, *normalized_test_digits(mnist, 64))


def test_over_budget_fails_check_1():
    wide = nn.Sequential(nn.Conv2d(1, 32, 3), nn.Flatten(), nn.Linear(32 * 26 * 26, 10))
    with pytest.raises(AssertionError, match="parameters"):
        check_parameter_budget(wide)
