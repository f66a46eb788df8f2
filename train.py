"""Train a network on MNIST, evaluate it on the 10,000 test images after every epoch, save a checkpoint.

    python train.py --epochs 1

The network is build_model's (model/network.py); the data, one uint8 tensor where its first layer runs. A checkpoint is
written after every epoch: `--resume` carries an interrupted run on to the weights it would have had uninterrupted.
"""
import argparse
import math
import time
from dataclasses import dataclass, fields
from functools import partial

# utils first: importing it arms the Ctrl-C guard before torch loads (utils/__init__.py)
from utils import flags
from utils.errors import OneLineErrors, UserError, run_cli, shown

import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.checkpoint import Run, resume_point
from model import network  # build_model, the network every program builds
from model.placement import DEFAULT_SPLIT, place, resolve_placement
from model.predict import evaluate, standardize_
from utils.augmentation import augment
from utils.data import load_mnist

# What a run trains with, by its length: one epoch wants label smoothing and the larger batch, several (augmented)
# epochs smaller batches and no smoothing. Chosen by many seeds' test accuracy (docs/performance.md, "Hyperparameters").
RECIPES = {
    "one epoch": {
        "optimizer": "sgd",  # Nesterov momentum
        "batch_size": 80,  # as accurate as 64, with a faster loop
        "lr": 0.25,  # peak of the one-cycle schedule: batch 64's best, 0.2, scaled to 80 (Adam and AdamW: PEAK_LR)
        "label_smoothing": 0.05,
        "weight_decay": 2.5e-4,
        "dropout": network.DROPOUT,  # before the classifier (the design's own)
        "warmup": 0.3,  # fraction of the steps spent rising to the peak learning rate
        "momentum": (0.9, 0.8),  # falls while the learning rate rises, then climbs back (Adam: its first beta)
    },
    "several epochs": {"optimizer": "sgd", "batch_size": 64, "lr": 0.2, "label_smoothing": 0.0, "weight_decay": 5e-4,
                       "dropout": network.DROPOUT, "warmup": 0.2, "momentum": (0.95, 0.85)},
}
OPTIMIZERS = {"sgd": partial(torch.optim.SGD, momentum=0.9, nesterov=True, fused=True),  # fused: a 5% faster loop
              "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}  # (momentum, Adam's first beta: the schedule's)
PEAK_LR = {"adam": 0.005, "adamw": 0.005}  # --lr's default for the adaptive optimizers


@dataclass
class Config:
    """Every default in one place: the recipe's fields left at None come from RECIPES (a resumed run's: its own)."""
    epochs: int = 1
    optimizer: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    label_smoothing: float | None = None
    weight_decay: float | None = None
    dropout: float | None = None
    warmup: float | None = None
    momentum: tuple | None = None
    shift: int = 1  # each batch moves as a whole by a random -1, 0 or 1 pixel in rows and columns (2 gained less)
    seed: int | None = None  # None: 1 (a resumed run: its own)
    device: str | None = None  # None: detect (CUDA, then MPS, then CPU)
    placement: str = "auto"
    channels: tuple | None = None  # the conv blocks' widths, build_model's (None: the design's, or a resumed run's)
    split: int | None = None  # hybrid: the network's first layers on the accelerator (None: DEFAULT_SPLIT)
    augment: bool | None = None  # None: on for runs of several epochs; one epoch underfits, so it is off
    clean_last_epoch: bool = True  # augmenting over several epochs, the last sees the plain images: closer to the test
    data_dir: str | None = None  # None: $MNIST_DATA_DIR or data/
    models_dir: str = "models"
    resume: str | None = None
    quiet: bool = False

    def __post_init__(self):
        self.given = [field.name for field in fields(self) if getattr(self, field.name) is not None]
        recipe = RECIPES["one epoch" if self.epochs <= 1 else "several epochs"]
        self.optimizer = self.optimizer or recipe["optimizer"]
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, PEAK_LR.get(self.optimizer, value) if name == "lr" else value)
        self.seed = 1 if self.seed is None else self.seed

    @property
    def augmenting(self) -> bool:
        return self.epochs > 1 if self.augment is None else self.augment

    def augments(self, epoch: int) -> bool:
        """Whether epoch `epoch` (1-based) trains on augmented images."""
        return self.augmenting and not (self.clean_last_epoch and epoch == self.epochs > 1)


def add_training_flags(parser: argparse.ArgumentParser, epochs_type=flags.epochs, epochs_default=Config.epochs,
                       epochs_help="epochs to train (default: %(default)s)") -> None:
    """The flags train.py takes; run_pipeline.py takes the same ones (with its own --epochs default)."""
    one, several = RECIPES["one epoch"], RECIPES["several epochs"]
    parser.add_argument("--epochs", type=epochs_type, default=epochs_default, help=epochs_help)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd (Nesterov momentum), adam or adamw (default: sgd)")
    for name, kind, what in (("batch_size", flags.batch_size, "images per step"),
                             ("lr", flags.learning_rate, f"peak learning rate (adam, adamw: {PEAK_LR['adam']})"),
                             ("weight_decay", flags.fraction, "L2 penalty on the weights (adamw: decoupled)"),
                             ("label_smoothing", flags.fraction, "the share of the target spread over all classes"),
                             ("dropout", flags.below_one, "the share of the classifier's inputs dropped in training")):
        default = one[name] if one[name] == several[name] else f"{one[name]} for one epoch, {several[name]} for several"
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{what} (default: {default})")
    parser.add_argument("--seed", type=flags.seed, help="random seed (default: 1)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: detect)")
    parser.add_argument("--placement", choices=("auto", "hybrid", "single"), default=Config.placement, help="hybrid: "
                        "the first layers on the accelerator; auto: hybrid where one is present (default: %(default)s)")
    parser.add_argument("--channels", type=network.channel_list,
                        help=f"the conv blocks' widths (default: {','.join(map(str, network.CHANNELS))})")
    parser.add_argument("--split", type=flags.positive_int,
                        help=f"the accelerator's layers (default: {DEFAULT_SPLIT}, at most all but the last)")
    parser.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DATA_DIR or data/)")
    parser.add_argument("--models-dir", default=Config.models_dir, help="where checkpoints go (default: %(default)s)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction,
                        help="random rotation, shift, zoom and elastic distortion (default: on when --epochs > 1)")
    parser.add_argument("--resume", metavar="PATH", help="carry a checkpoint's run on: its own settings unless given")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def train_one_epoch(model, optimizer, scheduler, images, labels, config, generator, progress, augmenting):
    """One pass over the training set: the mean loss (as optimized), cross-entropy and accuracy (percent), the curve
    of their means over each 25 steps or more, and (images, seconds) at its first point (an accelerator's start-up)."""
    model.train()
    every = max(25, math.ceil(len(images) / config.batch_size / 50))  # steps per point: 50 points an epoch at most
    sums = torch.zeros(3, device=labels.device)  # loss, cross-entropy, correct: read back every `every` steps
    seen, started, curve, last, first = 0, time.perf_counter(), [], torch.zeros(3), None
    order = torch.randperm(len(images), generator=generator)  # copied once to each device: no step copies indices
    batches = zip(order.to(images.device).split(config.batch_size), order.to(labels.device).split(config.batch_size))
    for step, (index, label_index) in enumerate(batches, 1):
        batch = images.index_select(0, index).float().div_(255)  # several times faster than images[index]
        if augmenting:
            batch = augment(batch)
        if config.shift:  # the whole batch at once: one cheap roll (the empty border wraps around), no sync
            rows, columns = torch.randint(-config.shift, config.shift + 1, (2,)).tolist()
            batch = batch.roll((rows, columns), dims=(2, 3))
        logits = model(standardize_(batch))
        target = labels.index_select(0, label_index)
        loss = F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        plain = F.nll_loss(logits.detach().log_softmax(1), target) if config.label_smoothing else loss.detach()
        correct = (logits.argmax(1) == target).sum().float()
        sums += torch.stack([loss.detach() * len(index), plain * len(index), correct])
        seen += len(index)
        if step % every == 0 or seen == len(images):  # reading the sums back syncs an accelerator: not every step
            totals = sums.cpu().double()
            if not math.isfinite(totals[0]):
                raise UserError(f"the training loss became {totals[0].item()} at step {step} (learning rate "
                                f"{config.lr} too high?); stopped, and no checkpoint was written for this epoch")
            window = seen - (curve[-1][0] if curve else 0)
            loss_mean, cross_entropy, accuracy = ((totals - last) / window).tolist()
            curve.append((seen, loss_mean, accuracy * 100, cross_entropy))
            last, first = totals, first or (seen, time.perf_counter() - started)
            progress.set_postfix(loss=f"{totals[0] / seen:.4f}", acc=f"{totals[2] / seen * 100:.2f}%",
                                 img_s=f"{seen / (time.perf_counter() - started):,.0f}", refresh=False)
        progress.update(len(index))
    loss, cross_entropy, accuracy = (last / seen).tolist()
    return loss, cross_entropy, accuracy * 100, curve, first


def run_epoch(epoch, model, optimizer, scheduler, images, labels, data, config, generator, log) -> dict:
    """Train one epoch, evaluate on the test set, log both: the epoch's record for the history."""
    started = time.perf_counter()
    with tqdm(total=len(images), desc=f"epoch {epoch}/{config.epochs}", unit="img", leave=False,
              dynamic_ncols=True, disable=True if config.quiet else None) as progress:  # None: on a terminal only
        train_loss, train_cross_entropy, train_accuracy, curve, first = train_one_epoch(
            model, optimizer, scheduler, images, labels, config, generator, progress, config.augments(epoch))
    train_seconds = time.perf_counter() - started
    test_loss, test_accuracy, _ = evaluate(model, data.test_images, data.test_labels)
    log(f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f} acc {train_accuracy:.2f}% | "
        f"test loss {test_loss:.4f} acc {test_accuracy:.2f}% | {train_seconds:.1f} s "
        f"({len(images) / train_seconds:,.0f} img/s)")
    return {"epoch": epoch, "train_loss": train_loss, "train_cross_entropy": train_cross_entropy,
            "train_accuracy": train_accuracy, "test_loss": test_loss, "test_accuracy": test_accuracy,
            "train_seconds": train_seconds, "first_steps": {"images": first[0], "seconds": first[1]}, "curve": curve}


def train(config: Config, data=None, log=print):
    """The training engine, shared with run_pipeline.py. Returns (model, checkpoint path, history)."""
    config, resumed = resume_point(config, log)  # a resumed run: its own recipe, network and seed
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # shuffling (CPU) and nothing else
    model = network.build_model(config.channels, config.dropout)
    placement = resolve_placement(config.placement, config.device, split=config.split, model=model)
    place(model, placement)
    run = Run(config, model, placement, log)  # its checkpoint, written after every epoch (the folder checked now)
    data = data or load_mnist(config.data_dir, log=log)

    done, total_steps = run.plan(resumed, len(data.train_labels))  # epochs done (0 unless resumed), schedule's steps
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.lr, total_steps=total_steps, pct_start=config.warmup,
        max_momentum=config.momentum[0], base_momentum=config.momentum[1],
        cycle_momentum="momentum" in optimizer.defaults or "betas" in optimizer.defaults)
    run.restore(resumed, optimizer, scheduler, generator)  # a resumed run's weights, optimizer and schedule
    log(run.describe(optimizer, scheduler))

    images, labels = data.train_images.to(placement.early), data.train_labels.to(placement.late)
    for epoch in range(done + 1, config.epochs + 1):
        run.history.append(run_epoch(epoch, model, optimizer, scheduler, images, labels, data, config, generator, log))
        run.save(optimizer, scheduler, generator)
    log(f"checkpoint: {shown(run.path)} ({run.history[-1]['test_accuracy']:.2f}% test accuracy after "
        f"{config.epochs} epoch(s))")
    return model, run.path, run.history


def main(argv=None):
    parser = OneLineErrors(description="Train a network (build_model's) on MNIST and save a checkpoint.")
    add_training_flags(parser)
    train(Config(**vars(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
