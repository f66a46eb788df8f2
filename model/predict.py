"""What every figure and prediction of this project uses, for any model from (N, 1, 28, 28) to (N, 10) logits:
the input scaling, the class probabilities averaged over each digit and its four one-pixel shifts, and the
loss and accuracy over a whole set."""
import math

import torch
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081  # of the MNIST training pixels, scaled to [0, 1]

# Test-time augmentation, as (rows, columns) moves: the image itself and its four one-pixel shifts (more accurate
# than the image alone; the eight shifts of the 3x3 neighbourhood gave no more: docs/performance.md)
SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))


def normalize(images_uint8):
    return standardize_(images_uint8.float().div_(255))


def standardize_(pixels):
    """Pixels in [0, 1] -> the network's input, in place (no new tensor per training step)."""
    return pixels.sub_(MEAN).div_(STD)


@torch.no_grad()
def log_probabilities(model, x):
    """The logarithm of the class probabilities, where the model's output is: the softmax averaged over the image
    and its four one-pixel shifts (SHIFTS), in one batch, in log space (no log of 0). MNIST digits sit inside an
    empty border of 4 pixels, so rolling an image by one pixel wraps only background around. Call it in eval
    mode."""
    views = torch.cat([torch.roll(x, shift, dims=(2, 3)) for shift in SHIFTS])
    each = model(views).log_softmax(1).view(len(SHIFTS), len(x), -1)
    return torch.logsumexp(each, 0) - math.log(len(SHIFTS))


@torch.no_grad()
def evaluate(model, images, labels, batch_size=200):
    """Mean loss (the cross-entropy of the predicted probabilities), accuracy in percent and the class
    probabilities (on the CPU) over a whole set of uint8 images. 200 digits make 1,000 views per forward pass:
    larger blocks were slower in a fresh process (their memory comes fresh from the kernel each time)."""
    model.eval()
    log_probs = torch.cat([log_probabilities(model, normalize(images[start:start + batch_size])).cpu()
                           for start in range(0, len(images), batch_size)])
    labels = labels.cpu()
    loss = F.nll_loss(log_probs, labels).item()
    accuracy = (log_probs.argmax(1) == labels).double().mean().item() * 100
    return loss, accuracy, log_probs.exp()


@torch.no_grad()
def plain_digit_logits(model, training=False):
    """The model's output for a blank, a grey and a white digit, in eval mode unless `training` (the model keeps
    its own mode)."""
    mode, device = model.training, next(model.parameters()).device  # a placed model moves its input on
    plain = torch.tensor([0, 128, 255], dtype=torch.uint8, device=device).view(3, 1, 1, 1).expand(3, 1, 28, 28)
    logits = model.train(training)(normalize(plain))
    model.train(mode)
    return logits


def finite_on_plain_digits(model) -> bool:
    """Whether the model's logits are finite for plain digits: weights of 3e38 are finite, and overflow (where
    a blank digit leaves every feature at 0, a white one does not)."""
    return bool(torch.isfinite(plain_digit_logits(model)).all())
