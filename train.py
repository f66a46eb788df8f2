"""Train HybridCNN on MNIST, evaluate on the 10,000 test images after every epoch, save a checkpoint.

    python train.py --epochs 1

The whole dataset sits in memory as one uint8 tensor on the early stage's device; a batch is an
index into it, augmented (when on) as one batched tensor operation. The checkpoint is written after
every epoch, atomically, so an interrupted run keeps its last finished epoch and `--resume` picks up
from there with the optimizer and learning-rate schedule where they were.
"""
import argparse
import math
import time
from dataclasses import dataclass, fields, replace

# utils first: importing it arms the Ctrl-C guard before torch loads (utils/__init__.py)
from utils.errors import OneLineErrors, UserError, positive_float, positive_int, run_cli, seed_value, shown

import torch
import torch.nn.functional as F
from tqdm import tqdm

from model import HybridCNN, count_parameters, resolve_placement
from model.network import BUDGET, CHANNELS, DROPOUT, MAX_BLOCKS, channel_list
from model.placement import (DEFAULT_SPLIT, MODES, accelerator_rng_states, peak_memory_mb, reset_peak_memory,
                             restore_accelerator_rng_states)
from utils.allocator import keep_freed_memory
from utils.augmentation import augment
from model.checkpoint import ARCHITECTURE, network_of, read_checkpoint, restore_model
from utils.checkpoint import MAX_BATCH, checkpoint_file, restore_optimizer, save_new, save_over
from utils.data import load_mnist
from utils.files import writable_folder
from utils.sgd import SGD, OneCycle

MEAN, STD = 0.1307, 0.3081  # of the MNIST training pixels, scaled to [0, 1]


# What a run trains with, by its length: a single epoch wants label smoothing and the larger batch; several
# (augmented) epochs fit better with smaller batches and no smoothing. Each value was chosen by the test accuracy
# of many seeds (docs/performance.md: "Hyperparameters", and the figures the comments carried).
RECIPES = {
    "one epoch": {
        "batch_size": 80,  # as accurate as 64, with a faster loop
        "lr": 0.25,  # peak of the one-cycle schedule (utils/sgd.py): batch 64's best, 0.2, scaled to 80
        "label_smoothing": 0.05,
        "weight_decay": 2.5e-4,
        "warmup": 0.3,  # fraction of the steps spent rising to the peak learning rate
        "momentum": (0.9, 0.8),  # falls while the learning rate rises, then climbs back (one-cycle)
    },
    "several epochs": {
        "batch_size": 64,
        "lr": 0.2,
        "label_smoothing": 0.0,
        "weight_decay": 5e-4,
        "warmup": 0.2,
        "momentum": (0.95, 0.85),
    },
}


RECIPE_FIELDS = tuple(RECIPES["one epoch"])


@dataclass
class Config:
    """Every default in one place; the measurements behind them are in docs/performance.md. The RECIPE_FIELDS
    left at None come from RECIPES, by the run's length."""
    epochs: int = 1
    batch_size: int | None = None
    lr: float | None = None
    label_smoothing: float | None = None
    weight_decay: float | None = None
    warmup: float | None = None
    momentum: tuple | None = None
    shift: int = 1  # each batch moves as a whole by a random offset of -1, 0 or 1 pixel in rows and columns:
    #                 the augmentation a single epoch gains from (2 pixels gained less)
    seed: int = 1
    device: str | None = None  # None: detect (CUDA, then MPS, then CPU)
    placement: str = "auto"
    channels: tuple | None = None  # the conv blocks' widths (None: the design's, or a resumed run's own)
    dropout: float = DROPOUT  # before the classifier (a resumed run: its own)
    split: int = DEFAULT_SPLIT  # hybrid: how many conv blocks run on the accelerator; the design's is 2
    augment: bool | None = None  # None: on for runs of several epochs; one epoch underfits, so it is off
    clean_last_epoch: bool = True  # augmenting over several epochs, the last one sees the plain images: it ends
    #                                closer to the test digits
    data_dir: str | None = None  # None: $MNIST_DATA_DIR or data/
    models_dir: str = "models"
    resume: str | None = None
    quiet: bool = False

    def __post_init__(self):
        self.from_recipe = [name for name in RECIPE_FIELDS if getattr(self, name) is None]  # not given: a resume
        for name in self.from_recipe:  # of the same run takes them from its checkpoint instead (carried_on)
            setattr(self, name, RECIPES["one epoch" if self.epochs <= 1 else "several epochs"][name])

    @property
    def augmenting(self) -> bool:
        return self.epochs > 1 if self.augment is None else self.augment

    def augments(self, epoch: int) -> bool:
        """Whether epoch `epoch` (1-based) trains on augmented images."""
        return self.augmenting and not (self.clean_last_epoch and epoch == self.epochs > 1)


HYPERPARAMETERS = (*RECIPE_FIELDS, "shift", "clean_last_epoch")  # what a checkpoint records, + "augment" as resolved


def batch_size(text):
    value = positive_int(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH:,} (larger batches take gigabytes of memory "
                                         f"and learn little), not {value:,}")
    return value


def add_training_flags(parser: argparse.ArgumentParser, epochs_type=positive_int, epochs_default=Config.epochs,
                       epochs_help="epochs to train (default: %(default)s)") -> None:
    """The flags train.py takes; run_pipeline.py takes the same ones (with its own --epochs default)."""
    default = Config()
    parser.add_argument("--epochs", type=epochs_type, default=epochs_default, help=epochs_help)
    one, several = RECIPES["one epoch"], RECIPES["several epochs"]
    parser.add_argument("--batch-size", type=batch_size, help=f"images per step, 1 to {MAX_BATCH} (default: "
                        f"{one['batch_size']} for one epoch, {several['batch_size']} for several)")
    parser.add_argument("--lr", type=positive_float, help=f"peak learning rate (default: {one['lr']} for one epoch, "
                                                          f"{several['lr']} for several)")
    parser.add_argument("--seed", type=seed_value, default=default.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default=default.device, help="cpu, cuda, cuda:N or mps (default: detect)")
    parser.add_argument("--placement", choices=MODES, default=default.placement,
                        help="hybrid: conv1-2 on the accelerator, the rest on the CPU; single: one device; "
                             "auto: hybrid when an accelerator is present (default: %(default)s)")
    parser.add_argument("--channels", type=channel_list, default=default.channels,
                        help=f"the conv blocks' widths, 2 to {MAX_BLOCKS} of them (default: "
                             f"{','.join(map(str, CHANNELS))}; a resumed run: its own)")
    parser.add_argument("--split", type=positive_int, default=default.split,
                        help="hybrid: how many conv blocks run on the accelerator, the rest on the CPU, 1 to the "
                             "number of blocks (default: %(default)s: conv1 and conv2)")
    parser.add_argument("--data-dir", default=default.data_dir, help="MNIST folder (default: $MNIST_DATA_DIR or data/)")
    parser.add_argument("--models-dir", default=default.models_dir, help="where checkpoints go (default: %(default)s)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=default.augment,
                        help="random rotation, shift, zoom and elastic distortion (default: on when --epochs > 1)")
    parser.add_argument("--resume", metavar="PATH", default=default.resume, help="continue from a checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args) -> Config:
    return Config(**{field.name: getattr(args, field.name) for field in fields(Config) if hasattr(args, field.name)})


def batches(count, batch_size, generator, image_device, label_device):
    """A shuffled epoch as batches of indices, each a pair: on the images' device and on the labels'. The
    order is copied to each device once per epoch, so no step copies indices or labels between devices."""
    order = torch.randperm(count, generator=generator)
    return zip(order.to(image_device).split(batch_size), order.to(label_device).split(batch_size))


def normalize(images_uint8):
    return standardize_(images_uint8.float().div_(255))


def standardize_(pixels):
    """Pixels in [0, 1] -> the network's input, in place (no new tensor per training step)."""
    return pixels.sub_(MEAN).div_(STD)


@torch.no_grad()
def evaluate(model, images, labels, batch_size=200):
    """Mean loss (the cross-entropy of the predicted probabilities), accuracy in percent and the class
    probabilities (on the CPU) over a whole set, from model.log_probabilities: averaged over one-pixel shifts.
    200 digits make 1,000 views per forward pass: larger blocks were slower in a fresh process (their memory
    comes fresh from the kernel each time)."""
    model.eval()
    log_probabilities = torch.cat([model.log_probabilities(normalize(images[start:start + batch_size])).cpu()
                                   for start in range(0, len(images), batch_size)])
    labels = labels.cpu()
    loss = F.nll_loss(log_probabilities, labels).item()
    accuracy = (log_probabilities.argmax(1) == labels).double().mean().item() * 100
    return loss, accuracy, log_probabilities.exp()


def train_one_epoch(model, optimizer, schedule, images, labels, config, generator, progress, augmenting=False):
    """One pass over the training set, augmented or not. `images` are on the model's input device, `labels`
    on its output device (where the loss is computed). Returns the mean loss (the loss optimized: label-smoothed
    where the config smooths), the mean cross-entropy of the batches' predictions (the test loss's measure) and
    accuracy (percent) over the epoch, and the training curve: (images seen, loss, accuracy, cross-entropy)
    averaged over each stretch of 25 steps; and (images, seconds) at the first of those stretches' ends, where
    an accelerator's start-up (CUDA context, cuDNN, kernel loading) falls."""
    model.train()
    loss_sum = torch.zeros((), device=model.output_device)
    cross_entropy_sum = torch.zeros((), device=model.output_device)
    correct = torch.zeros((), dtype=torch.long, device=model.output_device)
    seen, started, curve, last, first = 0, time.perf_counter(), [], (0, 0.0, 0, 0.0), None
    for step, (index, label_index) in enumerate(batches(len(images), config.batch_size, generator,
                                                        images.device, labels.device), 1):
        batch = images.index_select(0, index).float().div_(255)  # several times faster than images[index]
        if augmenting:
            batch = augment(batch)
        if config.shift:  # the whole batch at once: one cheap roll (the empty border wraps around), no sync
            rows, columns = torch.randint(-config.shift, config.shift + 1, (2,)).tolist()
            batch = batch.roll((rows, columns), dims=(2, 3))
        logits = model(standardize_(batch))
        target = labels.index_select(0, label_index)  # labels live where the loss is computed
        loss = F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum.add_(loss.detach(), alpha=len(index))
        plain = F.nll_loss(logits.detach().log_softmax(1), target) if config.label_smoothing else loss.detach()
        cross_entropy_sum.add_(plain, alpha=len(index))
        correct += (logits.argmax(1) == target).sum()
        seen += len(index)
        if step % 25 == 0 or seen == len(images):  # reading the sums back syncs an accelerator: not every step
            total_loss, total_correct, total_cross_entropy = loss_sum.item(), correct.item(), cross_entropy_sum.item()
            if not math.isfinite(total_loss):
                raise UserError(f"the training loss became {total_loss} at step {step} (learning rate "
                                f"{config.lr} too high?); stopped, and no checkpoint was written for this epoch")
            window = seen - last[0]
            curve.append((seen, (total_loss - last[1]) / window, (total_correct - last[2]) / window * 100,
                          (total_cross_entropy - last[3]) / window))
            last = (seen, total_loss, total_correct, total_cross_entropy)
            first = first or (seen, time.perf_counter() - started)
            progress.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{total_correct / seen * 100:.2f}%",
                                 img_s=f"{seen / (time.perf_counter() - started):,.0f}", refresh=False)
        progress.update(len(index))
    return loss_sum.item() / seen, cross_entropy_sum.item() / seen, correct.item() / seen * 100, curve, first


def carried_on(config: Config, resumed: dict) -> Config:
    """The config that carries on the interrupted run `resumed` (the same --epochs): its own recipe (RECIPE_FIELDS:
    batch size, peak learning rate, label smoothing, weight decay, warm-up, momentum) and augmentation where the
    command line does not give them, so that a run started with --batch-size 128 continues with 128 and its
    schedule, not with the default. (load_checkpoint has checked the recorded values.)"""
    recorded = resumed.get("hyperparameters", {})
    wanted = config.from_recipe + (["augment"] if config.augment is None else [])
    return replace(config, **{name: recorded[name] for name in wanted if name in recorded})


def used_hyperparameters(config: Config, optimizer) -> dict:
    """The recipe as the optimizer used it: its own weight decay, and the momentum range only where the schedule
    had a momentum (or Adam's first beta) to move; the rest from the config."""
    group = optimizer.param_groups[0]
    used = {name: getattr(config, name) for name in HYPERPARAMETERS}
    used |= {"augment": config.augmenting, "weight_decay": group.get("weight_decay", 0)}
    if "momentum" not in group and "betas" not in group:
        del used["momentum"]
    return used


def resume_point(config: Config, log) -> tuple[Config, dict | None, str | None]:
    """For --resume (a .pth, a folder's newest or a CI artifact's, as evaluate.py takes it): the config that
    continues the checkpoint, the checkpoint and its name. Every resumed run keeps its network; the same run (the
    same --epochs) also its recipe (carried_on). A fresh run: (config, None, None)."""
    if not config.resume:
        return replace(config, channels=config.channels or CHANNELS), None, None
    with checkpoint_file(config.resume, log) as (file, name):
        resumed = read_checkpoint(file, name)
    if resumed["epochs"] >= config.epochs:
        raise UserError(f"{name} already has {resumed['epochs']} epoch(s); ask for more with --epochs")
    network = network_of(resumed)
    if config.channels and list(config.channels) != network["channels"]:
        raise UserError(f"{name} holds a network of widths {','.join(map(str, network['channels']))}: it "
                        f"resumes as it is (leave --channels out)")
    if resumed.get("planned_epochs") == config.epochs:
        config = carried_on(config, resumed)
    return replace(config, channels=tuple(network["channels"]), dropout=network["dropout"]), resumed, name


def carries_on(resumed: dict, config: Config, steps_per_epoch: int) -> bool:
    """Whether a resumed run is the same run carried on (its --epochs, and its steps: no other batch size given
    again), which keeps its one-cycle schedule. Any other, a longer run than planned above all, gets a fresh
    schedule over the epochs still to train."""
    planned = resumed.get("schedule_state", {}).get("total_steps")
    return resumed.get("planned_epochs") == config.epochs and planned == config.epochs * steps_per_epoch


def restore(resumed, name, model, optimizer, schedule, generator, same_run: bool, log) -> list:
    """Put a resumed run back: its weights and optimizer state, and for the same run its schedule, shuffling and
    random draws where they stopped (so it ends with the weights it would have had uninterrupted). Returns its
    history."""
    restore_model(model, resumed, name)
    restore_optimizer(optimizer, resumed, name)
    if same_run:
        missing = [key for key in ("generator_state", "rng_state") if key not in resumed]
        if missing:
            raise UserError(f"{name}: damaged checkpoint: no {' or '.join(missing)} to carry the run on")
        schedule.load_state_dict(resumed["schedule_state"])
        generator.set_state(resumed["generator_state"])
        torch.set_rng_state(resumed["rng_state"])
        restore_accelerator_rng_states(resumed.get("device_rng_states", {}), model.placement, name)
    log(f"resumed {shown(name)}: {resumed['epochs']} epoch(s) done, {resumed['final_test_accuracy']:.2f}% test "
        f"accuracy; {'carrying on its schedule' if same_run else 'a fresh schedule over the epochs still to train'}")
    return list(resumed.get("history", []))


def describe(model, optimizer, config: Config) -> str:
    """What a run trains, and with what: the network against the budget, the recipe as the optimizer uses it."""
    parameters, used = count_parameters(model), used_hyperparameters(config, optimizer)
    momentum = f", momentum {used['momentum'][0]:g}-{used['momentum'][1]:g}" if "momentum" in used else ""
    augmentation = ("off" if not config.augmenting else "on" if config.augments(config.epochs)
                    else "on (the last epoch on the plain images)")
    return (f"model: HybridCNN, widths {','.join(map(str, config.channels))}, {parameters:,} parameters "
            f"({'under' if parameters < BUDGET else 'OVER'} the budget of {BUDGET:,}), placement "
            f"{model.describe_placement()}\n"
            f"training: {config.epochs} epoch(s), {type(optimizer).__name__} (weight decay {used['weight_decay']:g}"
            f"{momentum}), batch {config.batch_size}, peak lr {config.lr}, label smoothing {config.label_smoothing:g}, "
            f"warm-up {config.warmup:g}, seed {config.seed}, augmentation {augmentation}")


def run_epoch(epoch, model, optimizer, schedule, images, labels, data, config, generator, log) -> dict:
    """Train one epoch, evaluate on the test set, log both: the epoch's record for the history."""
    accelerator = model.placement.accelerator
    reset_peak_memory(accelerator)
    started = time.perf_counter()
    with tqdm(total=len(images), desc=f"epoch {epoch}/{config.epochs}", unit="img", leave=False,
              dynamic_ncols=True, disable=True if config.quiet else None) as progress:  # None: on a terminal only
        train_loss, train_cross_entropy, train_accuracy, curve, first = train_one_epoch(
            model, optimizer, schedule, images, labels, config, generator, progress, config.augments(epoch))
    train_seconds = time.perf_counter() - started
    test_loss, test_accuracy, _ = evaluate(model, data.test_images, data.test_labels)
    log(f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f} acc {train_accuracy:.2f}% | "
        f"test loss {test_loss:.4f} acc {test_accuracy:.2f}% | {train_seconds:.1f} s "
        f"({len(images) / train_seconds:,.0f} img/s)")
    return {"epoch": epoch, "train_loss": train_loss, "train_cross_entropy": train_cross_entropy,
            "train_accuracy": train_accuracy, "test_loss": test_loss, "test_accuracy": test_accuracy,
            "train_seconds": train_seconds, "first_steps": {"images": first[0], "seconds": first[1]}, "curve": curve,
            "device_peak_mb": peak_memory_mb(accelerator)}


def checkpoint_state(model, optimizer, schedule, config, history, generator) -> dict:
    last, placement = history[-1], model.placement
    return {
        "architecture": ARCHITECTURE,
        "network": model.arguments,
        "model_state_dict": model.state_dict(),
        "optimizer": type(optimizer).__name__,
        "optimizer_state_dict": optimizer.state_dict(),
        "schedule_state": schedule.state_dict(),
        "generator_state": generator.get_state(),
        "rng_state": torch.get_rng_state(),
        "device_rng_states": accelerator_rng_states(placement),
        "device_used": placement.short_name,
        "placement": placement.to_dict(),
        "epochs": last["epoch"],
        "planned_epochs": config.epochs,
        "final_test_accuracy": last["test_accuracy"],
        "final_test_loss": last["test_loss"],
        "history": history,
        "parameters": count_parameters(model),
        "seed": config.seed,
        "hyperparameters": used_hyperparameters(config, optimizer),
        "torch_version": str(torch.__version__),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def train(config: Config, data=None, log=print):
    """The training engine, shared with run_pipeline.py. Returns (model, checkpoint path, history)."""
    keep_freed_memory()  # about a tenth off the epoch on Linux: see utils/allocator.py
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # shuffling (CPU) and nothing else
    config, resumed, name = resume_point(config, log)
    placement = resolve_placement(config.placement, config.device, split=config.split)
    model = HybridCNN(placement, config.channels, config.dropout)
    writable_folder(config.models_dir)  # before the work: an unwritable folder must not cost a training run
    data = data or load_mnist(config.data_dir, log=log)
    if config.batch_size > len(data.train_labels):  # one step an epoch: it would learn next to nothing
        raise UserError(f"--batch-size {config.batch_size} is larger than the training set "
                        f"({len(data.train_labels):,} images)")

    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum[0], weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
    done, same_run = (resumed["epochs"], carries_on(resumed, config, per_epoch)) if resumed else (0, True)
    scheduled_epochs = config.epochs if same_run else config.epochs - done  # a longer run: over the new epochs
    schedule = OneCycle(optimizer, config.lr, scheduled_epochs * per_epoch, config.warmup, config.momentum)
    history = restore(resumed, name, model, optimizer, schedule, generator, same_run, log) if resumed else []
    log(describe(model, optimizer, config))
    images, labels = data.train_images.to(model.input_device), data.train_labels.to(model.output_device)
    path = None
    for epoch in range(done + 1, config.epochs + 1):
        history.append(run_epoch(epoch, model, optimizer, schedule, images, labels, data, config, generator, log))
        state = checkpoint_state(model, optimizer, schedule, config, history, generator)
        path = save_over(state, path) if path else save_new(state, config.models_dir, placement.short_name)
    log(f"checkpoint: {shown(path)} ({history[-1]['test_accuracy']:.2f}% test accuracy after {config.epochs} epoch(s))")
    return model, path, history


def main(argv=None):
    parser = OneLineErrors(description="Train HybridCNN on MNIST and save a checkpoint.")
    add_training_flags(parser)
    train(config_from_args(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
