import pytest
import torch

from model.predict import standardize_
from utils.augmentation import AugmentConfig, augment


def digits(mnist, n=256):
    return mnist.train_images[:n].float() / 255


def test_keeps_shape_dtype_and_range_and_changes_images(mnist):
    images = digits(mnist)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    changed = (out - images).abs().flatten(1).mean(1)
    assert (changed > 0.01).all()  # every image really moved
    assert out.sum() > 0.8 * images.sum()  # and the digits stayed on the canvas


def test_same_seed_same_augmentations(mnist):
    images = digits(mnist)
    first = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(4)))


def test_zero_magnitudes_are_the_identity(mnist):
    images = digits(mnist)
    none = AugmentConfig(rotation=0, translation=0, scale=0, elastic=0)
    assert torch.allclose(augment(images, torch.Generator().manual_seed(0), none), images, atol=1e-5)


def test_each_transform_is_configurable(mnist):
    images = digits(mnist, 64)
    for setting in ({"rotation": 30}, {"translation": 0.2}, {"scale": 0.3}, {"elastic": 0.2}):
        only = AugmentConfig(**({"rotation": 0, "translation": 0, "scale": 0, "elastic": 0} | setting))
        out = augment(images, torch.Generator().manual_seed(0), only)
        assert (out - images).abs().mean() > 0.01, setting


def moments(images):
    """Per image: the centre of mass (row, column) in pixels, the radius of gyration, the direction of the
    principal axis in degrees (-90 to 90) and how elongated the digit is (the ratio of the axes' variances)."""
    weights = images[:, 0]
    mass = weights.sum((1, 2))
    rows, columns = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    row, column = (weights * rows).sum((1, 2)) / mass, (weights * columns).sum((1, 2)) / mass
    dy, dx = rows - row[:, None, None], columns - column[:, None, None]
    yy, xx, xy = [(weights * a * b).sum((1, 2)) / mass for a, b in ((dy, dy), (dx, dx), (dx, dy))]
    spread = ((xx - yy) ** 2 / 4 + xy ** 2).sqrt()
    elongation = ((xx + yy) / 2 + spread) / ((xx + yy) / 2 - spread)
    return row, column, (yy + xx).sqrt(), torch.rad2deg(0.5 * torch.atan2(2 * xy, xx - yy)), elongation


def only(**setting):
    return AugmentConfig(**({"rotation": 0, "translation": 0, "scale": 0, "elastic": 0} | setting))


def test_each_transform_reaches_its_stated_strength_and_no_further(mnist):
    """Translation 0.2 moves digits by up to a fifth of the side (5.6 px), uniformly; rotation 30 turns them by up
    to 30 degrees (seen on the elongated digits); scale 0.3 makes them 0.7 to 1.3 times as large."""
    images = digits(mnist, 1000)
    row, column, radius, angle, elongation = moments(images)

    moved_row, moved_column, *_ = moments(augment(images, torch.Generator().manual_seed(0), only(translation=0.2)))
    for move in (moved_row - row, moved_column - column):
        assert 2.4 < move.abs().mean() < 3.2 and 4.8 < move.abs().max() < 6.4  # uniform in +-5.6: mean 2.8

    turned = moments(augment(images, torch.Generator().manual_seed(0), only(rotation=30)))[3]
    elongated = elongation > 4
    turn = (turned - angle + 90) % 180 - 90
    assert elongated.sum() > 100
    assert 12 < turn[elongated].abs().mean() < 18 and 25 < turn[elongated].abs().max() < 33  # uniform: mean 15

    grown = moments(augment(images, torch.Generator().manual_seed(0), only(scale=0.3)))[2]
    ratio = grown / radius
    assert ratio.min() > 0.66 and ratio.max() < 1.34 and ratio.min() < 0.75 and ratio.max() > 1.25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_transform_goes_both_ways_and_a_shift_moves_each_axis_on_its_own(mnist, seed):
    """Direction, at any seed: with translation alone the row and column shifts vary independently (not along a
    diagonal) and each goes both ways; rotation turns both ways; zoom goes both in and out."""
    images = digits(mnist, 1000)
    row, column, radius, angle, elongation = moments(images)
    generator = torch.Generator().manual_seed(seed)

    moved_row, moved_column, *_ = moments(augment(images, generator, only(translation=0.2)))
    rows, columns = moved_row - row, moved_column - column
    correlation = torch.corrcoef(torch.stack([rows, columns]))[0, 1].item()
    assert abs(correlation) < 0.2, f"row and column shifts go together (correlation {correlation:.3f}): a diagonal"
    for axis, move in (("row", rows), ("column", columns)):  # uniform in +-5.6 px: 41% beyond 1 px each way
        ways = (move > 1).double().mean().item(), (move < -1).double().mean().item()
        assert min(ways) > 0.3, f"{axis} shifts beyond 1 px: {ways[0]:.0%} forward, {ways[1]:.0%} back"

    turn = ((moments(augment(images, generator, only(rotation=30)))[3] - angle + 90) % 180 - 90)[elongation > 4]
    ways = (turn > 5).double().mean().item(), (turn < -5).double().mean().item()  # 42% each way
    assert min(ways) > 0.25, f"turns beyond 5 degrees: {ways[0]:.0%} one way, {ways[1]:.0%} the other"

    ratio = moments(augment(images, generator, only(scale=0.3)))[2] / radius
    ways = (ratio > 1.1).double().mean().item(), (ratio < 0.9).double().mean().item()  # 33% each way
    assert min(ways) > 0.25, f"zoomed in by over 10%: {ways[0]:.0%}, out: {ways[1]:.0%}"


def test_a_trained_model_still_reads_augmented_digits(trained_model, mnist):
    """The augmentation changes how a digit is written, not which digit it is: the one-epoch model (trained
    without it) reads most augmented test digits right."""
    images = mnist.test_images[:2000].float() / 255
    augmented = augment(images, torch.Generator().manual_seed(0))
    trained_model.eval()
    with torch.no_grad():
        predictions = trained_model(standardize_(augmented)).argmax(1)
    assert (predictions == mnist.test_labels[:2000]).double().mean() > 0.97
