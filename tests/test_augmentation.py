import torch

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
