"""The device paths that training really uses, on every placement this machine has: the CPU cases run
everywhere, the CUDA and MPS ones (marked `cuda`, `mps`) where that device is present."""
import ast
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from tqdm import tqdm

import train
from model import HybridCNN, place, resolve_placement
from model.predict import MEAN, STD
from utils.augmentation import AugmentConfig, augment

from utils.checkpoint import load_checkpoint
from utils.data import MNIST

from conftest import REPO, interrupt_in_epoch_2, on, quiet_config, synchronize, training_steps

PLACEMENTS = [on("single", "cpu"), on("hybrid", "cuda"), on("single", "cuda"), on("hybrid", "mps"), on("single", "mps")]


@pytest.mark.parametrize("mode, device", PLACEMENTS)
def test_the_loss_reads_each_image_s_own_label_after_it_has_landed(mode, device, small_mnist, monkeypatch):
    """A probe in the loss: what each step's target held when the loss read it must be what it holds after a
    sync (a copy still in flight reads stale or zero labels, with no error), and each target must be the label
    of the image the network saw in its place (found by its pixels, with the batch's one-pixel shift undone)."""
    placement = resolve_placement(mode, device)
    model = place(HybridCNN(), placement)
    images = small_mnist.train_images.to(placement.early)
    labels = small_mnist.train_labels.to(placement.late)
    read, cross_entropy = [], F.cross_entropy

    def probe(logits, target, **options):
        read.append((target, target.clone()))  # the clone is what the loss reads at this moment
        return cross_entropy(logits, target, **options)

    monkeypatch.setattr(F, "cross_entropy", probe)
    config = train.Config()
    optimizer = torch.optim.SGD(model.parameters(), config.lr, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=-(-len(labels) // config.batch_size))
    with training_steps() as steps:
        train.train_one_epoch(model, optimizer, scheduler, images, labels, config, torch.Generator().manual_seed(0),
                              tqdm(disable=True), augmenting=False)
    synchronize(device)
    landed = torch.cat([target for target, _ in read]).cpu()
    assert torch.equal(torch.cat([copy for _, copy in read]).cpu(), landed)
    assert all(target.device == torch.device(placement.late) for target, _ in read)

    label_of = {image.numpy().tobytes(): label
                for image, label in zip(small_mnist.train_images, small_mnist.train_labels.tolist())}
    seen = []
    for inputs, _ in steps:
        pixels = ((inputs * STD + MEAN) * 255).round().to(torch.uint8)
        for rows, columns in [(r, c) for r in (-1, 0, 1) for c in (-1, 0, 1)]:
            found = [label_of.get(image.numpy().tobytes()) for image in pixels.roll((rows, columns), (2, 3))]
            if None not in found:
                break
        assert None not in found, "a batch whose images are not whole-pixel shifts of training images"
        seen += found
    assert len(seen) == len(small_mnist.train_labels) and seen == landed.tolist()


@pytest.mark.parametrize("mode, device", PLACEMENTS)
def test_an_interrupted_run_resumes_to_the_same_weights(mode, device, tmp_path, tiny_mnist):
    """Augmentation draws random numbers on the early stage's device, dropout on the late stage's: the
    checkpoint carries every generator's state, so epoch 2 after a resume draws what it would have drawn."""
    def run(folder, log=lambda message: None, **options):
        config = quiet_config(tmp_path / folder, epochs=2, augment=True, placement=mode, device=device, **options)
        return train.train(config, data=tiny_mnist, log=log)[0]

    straight = run("straight")

    with pytest.raises(KeyboardInterrupt):
        run("interrupted", log=interrupt_in_epoch_2)
    (path,) = (tmp_path / "interrupted" / "models").glob("*.pth")
    state = load_checkpoint(path)
    assert state["epochs"] == 1
    kinds = {torch.device(device).type} - {"cpu"}
    assert set(state["device_rng_states"]) == kinds
    resumed = run("resumed", resume=str(path))
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # --seed on a resume draws new numbers from there on, as the log and the checkpoint then say (before, the
    # checkpoint's generators went on drawing seed 1's numbers while both said seed 2)
    said = []
    reseeded = run("reseeded", log=said.append, resume=str(path), seed=2)
    assert not torch.equal(reseeded[0].conv.weight, straight[0].conv.weight)
    assert load_checkpoint(next((tmp_path / "reseeded" / "models").glob("*.pth")))["seed"] == 2
    assert "carrying on its schedule, drawing from seed 2 from here on" in said[0]


@pytest.mark.parametrize("mode, device", PLACEMENTS)
def test_one_seed_trains_to_the_same_weights_twice(mode, device, tmp_path, tiny_mnist):
    def run(seed):
        config = quiet_config(tmp_path, epochs=2, augment=True, placement=mode, device=device, seed=seed)
        return train.train(config, data=tiny_mnist, log=lambda message: None)

    first, second = run(5), run(5)
    assert first[2][-1]["test_accuracy"] == second[2][-1]["test_accuracy"]
    for a, b in zip(first[0].state_dict().values(), second[0].state_dict().values()):
        assert torch.equal(a, b)
    other = run(6)
    assert not torch.equal(other[0][0].conv.weight, first[0][0].conv.weight)


def tensors_in(value):
    """Every tensor in nested dicts, lists and tuples (of a checkpoint this project wrote: no cycles)."""
    if isinstance(value, torch.Tensor):
        yield value
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ():
        yield from tensors_in(item)


def devices_and_count(path) -> tuple:
    """Where plain torch.load(path, weights_only=True), no map_location, puts a checkpoint's tensors, and how
    many there are."""
    found = list(tensors_in(torch.load(path, weights_only=True)))
    return sorted({str(tensor.device) for tensor in found}), len(found)


@pytest.mark.parametrize("mode, device", PLACEMENTS)
def test_a_checkpoint_saved_on_a_device_loads_where_there_is_no_gpu(mode, device, tmp_path, tiny_mnist):
    """In a process that sees no GPU: what a colleague's laptop or a downloaded CI artifact gets."""
    _, path, _ = train.train(quiet_config(tmp_path, placement=mode, device=device), data=tiny_mnist,
                             log=lambda message: None)
    if torch.cuda.is_available():  # a process of its own, with the GPU hidden
        result = subprocess.run([sys.executable, "-c", f"import test_devices; print(test_devices.devices_and_count("
                                 f"{str(path)!r}))"], cwd=REPO / "tests", capture_output=True, text=True,
                                env=os.environ | {"CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, result.stderr
        devices, count = ast.literal_eval(result.stdout)
    else:  # this process sees none either
        devices, count = devices_and_count(path)
    assert devices == ["cpu"] and count >= len(HybridCNN().state_dict())


@pytest.mark.parametrize("mode, device", PLACEMENTS[1:])
def test_training_on_the_device_reaches_what_the_cpu_reaches(mode, device, tmp_path, mnist):
    """The real engine, 300 steps on 24,000 real digits, tested on all 10,000: the CPU reaches 98.5-98.7%
    with seeds 1-6. Hybrid draws the same dropout masks as the CPU (its classifier runs there), single
    draws its own on the device: either way, a margin of half a point and not more."""
    digits = MNIST(mnist.train_images[:24000], mnist.train_labels[:24000], mnist.test_images, mnist.test_labels)
    accuracy = {}
    for where, placement in [("cpu", ("single", "cpu")), ("device", (mode, device))]:
        config = quiet_config(tmp_path / where, placement=placement[0], device=placement[1])
        model, _, history = train.train(config, data=digits, log=lambda message: None)
        accuracy[where] = history[-1]["test_accuracy"]
    assert model[0].conv.weight.device.type == torch.device(device).type
    assert accuracy["cpu"] > 98 and abs(accuracy["device"] - accuracy["cpu"]) <= 0.5, accuracy


@pytest.mark.parametrize("mode, device", [on("single", "cpu"), on("single", "cuda"), on("single", "mps")])
def test_augmentation_on_the_device_does_what_it_does_on_the_cpu(mode, device, mnist):
    images = mnist.train_images[:512].float() / 255
    moved = {}
    for where in ("cpu", device):
        out = augment(images.to(where), torch.Generator(where).manual_seed(0))
        assert out.device.type == torch.device(where).type and out.shape == images.shape and out.dtype == images.dtype
        out = out.cpu()
        assert out.min() >= 0 and out.max() <= 1 and out.sum() > 0.8 * images.sum()  # the digits stay on the canvas
        moved[where] = (out - images).abs().flatten(1).mean(1)
        assert (moved[where] > 0.01).all()  # every image really moved
    # other random draws on the device, the same distribution: the mean change agrees within a tenth
    assert moved[device].mean().item() == pytest.approx(moved["cpu"].mean().item(), rel=0.1)
    identity = AugmentConfig(rotation=0, translation=0, scale=0, elastic=0)
    unchanged = augment(images.to(device), torch.Generator(device).manual_seed(0), identity).cpu()
    assert torch.allclose(unchanged, images, atol=1e-5)
