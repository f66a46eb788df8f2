"""Probes of the device paths, printed as figures, for every placement this machine has (CPU first, as the
reference): what the tests in tests/test_devices.py assert, shown so a GPU session's log can be read.

    python bench/device_probes.py

1. Labels: every target the loss reads during an epoch of hybrid or single training, against the same
   tensor read again after a sync (a copy still in flight reads stale or zero labels): mismatches.
2. Same seed twice: a SHA-256 of all weights after two runs of 2 epochs (augmented) with one seed.
3. A checkpoint saved there, opened by plain torch.load(path, weights_only=True) in a process that sees
   no GPU (CUDA_VISIBLE_DEVICES=): the devices its tensors load on.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import train  # noqa: E402
from model import HybridCNN, Machine, place, resolve_placement  # noqa: E402
from utils.data import MNIST, load_mnist  # noqa: E402

OPEN_WITHOUT_GPU = """import sys, torch
state = torch.load(sys.argv[1], weights_only=True)
def tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (dict, list, tuple)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from tensors(item)
found = list(tensors(state))
print(f"{len(found)} tensors on {sorted({str(t.device) for t in found})}")"""


def placements(machine):
    accelerator = machine.accelerator()
    if not accelerator:
        print("no CUDA device and no MPS here: the accelerator placements are skipped")
        return [("single", "cpu")]
    return [("single", "cpu"), ("hybrid", accelerator), ("single", accelerator)]


def label_mismatches(mode, device, digits):
    placement = resolve_placement(mode, device)
    model = place(HybridCNN(), placement)
    images, labels = digits.train_images.to(placement.early), digits.train_labels.to(placement.late)
    read, cross_entropy = [], F.cross_entropy

    def probe(logits, target, **options):
        read.append((target, target.clone()))  # the clone: what the loss reads at this moment
        return cross_entropy(logits, target, **options)

    F.cross_entropy = probe
    try:
        config = train.Config()
        optimizer = torch.optim.SGD(model.parameters(), config.lr, momentum=0.9, nesterov=True)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr,
                                                        total_steps=-(-len(labels) // config.batch_size))
        train.train_one_epoch(model, optimizer, scheduler, images, labels, config, torch.Generator().manual_seed(0),
                              tqdm(disable=True), augmenting=False)
    finally:
        F.cross_entropy = cross_entropy
    synchronize = {"cuda": torch.cuda.synchronize, "mps": lambda: torch.mps.synchronize()}
    synchronize.get(torch.device(placement.early).type, lambda: None)()
    landed = torch.cat([target for target, _ in read]).cpu()
    at_read = torch.cat([copy for _, copy in read]).cpu()
    return int((landed != at_read).sum()), len(landed)


def weights_digest(model):
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main():
    mnist = load_mnist(log=lambda message: None)
    digits = MNIST(mnist.train_images[:8000], mnist.train_labels[:8000], mnist.test_images, mnist.test_labels)
    print(f"torch {torch.__version__}; CUDA {torch.version.cuda}; "
          + (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no CUDA device"))
    with tempfile.TemporaryDirectory() as folder:
        for mode, device in placements(Machine.detect()):
            wrong, total = label_mismatches(mode, device, digits)
            print(f"{mode} {device}: 1. labels read by the loss that differ after a sync: {wrong} of {total}")
            runs = []
            for run in range(2):
                config = train.Config(epochs=2, augment=True, seed=7, placement=mode, device=device, quiet=True,
                                      models_dir=str(Path(folder) / f"{mode}-{device}-{run}"))
                runs.append(train.train(config, data=digits, log=lambda message: None))
            digests = [weights_digest(model) for model, _, _ in runs]
            print(f"{mode} {device}: 2. weights after two runs with seed 7: {digests[0]} and {digests[1]}: "
                  + ("identical" if digests[0] == digests[1] else "DIFFERENT"))
            opened = subprocess.run([sys.executable, "-c", OPEN_WITHOUT_GPU, str(runs[0][1])], capture_output=True,
                                    text=True, env=os.environ | {"CUDA_VISIBLE_DEVICES": ""})
            print(f"{mode} {device}: 3. its checkpoint, torch.load(weights_only=True) with no GPU visible: "
                  + (opened.stdout.strip() if opened.returncode == 0 else f"FAILED: {opened.stderr.strip()[-300:]}"))


if __name__ == "__main__":
    main()
