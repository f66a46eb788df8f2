"""A checkpoint's network: what it records of the network (its layers' names and shapes, build_model's
arguments), rebuilding that network with build_model, and loading its weights. Reading the file and checking
the rest is utils/checkpoint.py's."""
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from model.network import BUDGET, CHANNELS, build_model, conv_widths, count_parameters
from model.placement import (accelerator_rng_states, describe, peak_memory_mb, place, resolve_placement,
                             restore_accelerator_rng_states, splittable)
from model.predict import finite_on_plain_digits, plain_digit_logits
from utils.checkpoint import (RECIPE, checkpoint_file, load_checkpoint, restore_optimizer, restore_schedule,
                              save_new, save_over, steps_taken)
from utils.errors import UserError, shown
from utils.flags import MAX_WIDTH
from utils import schema
from utils.files import replace_atomically, writable_folder


def network_record(model: nn.Module, channels, dropout) -> dict:
    """What a checkpoint says of its network, from the network itself: its class, its layers' names and shapes,
    and the arguments build_model made it with."""
    return {"architecture": type(model).__name__, "build_model": {"channels": list(channels), "dropout": dropout},
            "layers": layer_shapes(model.state_dict())}


def uncompiled(model: nn.Module) -> nn.Module:
    """The network under torch.compile's wrapper, whose layer names gain "_orig_mod.": a checkpoint holds the
    network's own names, and loads whether or not the code at hand compiles it."""
    return getattr(model, "_orig_mod", model)


def layer_shapes(weights: dict) -> dict:
    return {name: list(tensor.shape) for name, tensor in weights.items()}


def load_weights(model: nn.Module, state: dict, path) -> None:
    """Load the checkpoint's weights into `model`: refused in one line, naming the first layer that differs, where
    the code at hand builds another network."""
    model = uncompiled(model)
    weights = model.state_dict()
    here, there = layer_shapes(weights), state["layers"]
    for name in [*there, *(name for name in here if name not in there)]:
        if here.get(name) != there.get(name):
            raise UserError(f"{path}: layer {shown(name, 60)} is {size(here.get(name))} here, "
                            f"{size(there.get(name))} in the checkpoint: build_model makes another network now")
    for name, recorded in state["model_state_dict"].items():
        if recorded.dtype != weights[name].dtype:  # loading would convert them in silence
            raise UserError(f"{path}: layer {shown(name, 60)} holds {schema.name(weights[name].dtype)} numbers here, "
                            f"{schema.name(recorded.dtype)} in the checkpoint")
    model.load_state_dict(state["model_state_dict"])
    negative = [name for name, module in model.named_modules()
                if isinstance(module, nn.modules.batchnorm._BatchNorm)
                and module.running_var is not None and (module.running_var < 0).any()]
    if negative:  # a variance is never negative: its square root would make every prediction NaN
        raise UserError(f"{path}: damaged checkpoint: {shown(negative[0], 100)}.running_var has negative variances")
    if not finite_on_plain_digits(model):
        raise UserError(f"{path}: damaged checkpoint: its weights make the output for a plain digit NaN or infinite")
    if count_parameters(model) != state["parameters"]:
        raise UserError(f"{path}: records {state['parameters']:,} parameters, but its weights hold "
                        f"{count_parameters(model):,}")


def size(shape) -> str:
    return "absent" if shape is None else schema.size(shape)


def load_model(path, placement_mode="auto", device=None, name=None) -> tuple[nn.Module, dict]:
    """Rebuild the network a checkpoint records, for this machine: the recorded split between the devices, the
    devices found here (or asked for). Returns the model in eval mode and the checkpoint."""
    state = load_checkpoint(path, name)
    model = built(**state["build_model"])
    load_weights(model, state, name or path)
    split = state["placement"]["split"] if splittable(model) else None  # a model of its own runs on one device
    place(model, resolve_placement(placement_mode, device, split=split, model=model))
    return model.eval(), state


def resume_point(config, log=print):
    """For --resume (a .pth, a folder's newest or a CI artifact's, as evaluate.py takes it): the config that
    carries the checkpoint's run on (its network, its seed, and its recipe, augmentation and a hybrid run's split
    where the command line does not give them), and (checkpoint, its name). A fresh run: (config, None)."""
    if not config.resume:
        return replaced(config, channels=config.channels or CHANNELS), None
    with checkpoint_file(config.resume, log) as (file, name):
        state = load_checkpoint(file, name)
    if state["epochs"] >= config.epochs:
        raise UserError(f"{name} already has {state['epochs']} epoch(s); ask for more with --epochs")
    network = state["build_model"]
    if config.channels and list(config.channels) != network["channels"]:
        raise UserError(f"{name} holds a network of widths {','.join(map(str, network['channels']))}: it "
                        f"resumes as it is (leave --channels out)")
    recorded = {"optimizer": state["optimizer"].lower(), "seed": state["seed"],
                "channels": tuple(network["channels"]), "dropout": network["dropout"]}
    recorded |= state["hyperparameters"]
    placement = state["placement"]
    if placement["early"] != placement["late"] and config.placement != "single":  # a hybrid run keeps its split
        recorded["split"] = placement["split"]
    if "momentum" in recorded:
        recorded["momentum"] = tuple(recorded["momentum"])
    kept = {key: value for key, value in recorded.items() if key not in config.given and hasattr(config, key)}
    return replaced(config, **kept), (state, name)


def replaced(config, **changes):
    """dataclasses.replace, keeping the fields the command line gave (a new Config would count every field set)."""
    given, config = config.given, replace(config, **changes)
    config.given = given
    return config


SCHEDULE = ("lr", "warmup", "momentum")  # what the one-cycle schedule is made of, besides its length


def built(channels, dropout) -> nn.Module:
    """build_model's network, its lazy layers (nn.LazyLinear) shaped by a first input."""
    model = build_model(channels, dropout)
    plain_digit_logits(model)
    return model


def ignored_flag(model: nn.Module, config) -> str | None:
    """--channels or --dropout, where given and build_model makes the same network whatever its value (a network
    of one's own may have its own): built again with another value, its layers keep their shapes (widths), or from
    the same weights and random numbers it gives the same outputs in training (dropout)."""
    def trained_output(network):
        torch.default_generator.manual_seed(0)  # the CPU's alone: torch.manual_seed would reseed an accelerator too
        return plain_digit_logits(network, training=True)

    with torch.random.fork_rng(devices=[]):  # the run's random numbers stay where they were
        if "channels" in config.given:
            other = [width + 1 if width < MAX_WIDTH else width - 1 for width in config.channels]
            if layer_shapes(uncompiled(built(other, config.dropout)).state_dict()) == layer_shapes(model.state_dict()):
                return "--channels"
        if "dropout" in config.given:
            another = 0.5 if config.dropout < 0.5 else 0.25
            one, other = (uncompiled(built(config.channels, dropout)) for dropout in (config.dropout, another))
            other.load_state_dict(one.state_dict())
            if torch.equal(trained_output(one), trained_output(other)):
                return "--dropout"
    return None


class Run:
    """A training run's checkpoint: what it carries on from (--resume), its history, and the file it writes after
    every epoch, as plain CPU tensors and types (weights-only loading reads it on any machine)."""

    def __init__(self, config, model, placement, log=print):
        writable_folder(config.models_dir)  # before the work: an unwritable folder must not cost a training run
        model = uncompiled(model)  # checked as it is (a compiled one would be traced for it), and recorded so
        shape = tuple(plain_digit_logits(model).shape)
        if shape != (3, 10):  # training would go on with it in silence, or fail deep in the loss
            raise UserError(f"build_model's network turns a batch of 3 digits into a tensor of shape {shape}, not "
                            "(3, 10): one logit per digit class")
        flag = ignored_flag(model, config)
        if flag:
            value = widths_text(config.channels) if flag == "--channels" else f"{config.dropout:g}"
            raise UserError(f"{flag} {value}: build_model makes the same network whatever its value (one of your own "
                            f"has its own): leave {flag} out, or make build_model use it")
        self.config, self.model, self.placement, self.log = config, model, placement, log
        self.history, self.path, self.same_run = [], None, False

    def plan(self, resumed, images: int) -> tuple[int, int]:
        """Where a run on `images` training images starts: (epochs done, steps its schedule spans). A resumed run
        carries its schedule on where it is the same run (its --epochs, its steps an epoch, or one, its learning
        rates); a longer run than planned, or one given another batch size or learning rate, gets a fresh schedule
        over the epochs left."""
        config = self.config
        if config.batch_size > images:  # one step an epoch: it would learn next to nothing
            raise UserError(f"--batch-size {config.batch_size} is more than the {images:,} training images")
        steps_per_epoch = math.ceil(images / config.batch_size)
        if resumed is None:
            return 0, self.schedule_span(config.epochs * steps_per_epoch)
        state = resumed[0]
        recipe, schedule = state["hyperparameters"], state["schedule_state"]  # as the schema has them
        self.same_run = (state["planned_epochs"] == config.epochs
                         and steps_taken(schedule) in (state["epochs"] * steps_per_epoch,  # as many steps an epoch
                                                       state["epochs"])  # or stepped once an epoch
                         and all(tuple_of(recipe.get(key)) == tuple_of(getattr(config, key)) for key in SCHEDULE
                                 if key in recipe))
        epochs = config.epochs if self.same_run else config.epochs - state["epochs"]
        return state["epochs"], self.schedule_span(epochs * steps_per_epoch)

    def restore(self, resumed, optimizer, scheduler, generator) -> None:
        """Put a resumed run back: its weights and optimizer state, and for the same run carried on (plan) its
        schedule and random states where they stopped."""
        if resumed is None:
            return
        (state, name), config = resumed, self.config
        load_weights(self.model, state, name)
        # a fresh schedule starts from the settings a fresh run has (a chainable scheduler, such as
        # CosineAnnealingLR, would go on from the learning rate the run ended at, about 0)
        restore_optimizer(optimizer, state, name, settings=self.same_run)
        reseeded = config.seed != state["seed"]  # --seed asked for new random numbers from here on
        if self.same_run:
            for group in optimizer.param_groups:  # --weight-decay given again: for the groups that had the run's
                if group["weight_decay"] == state["hyperparameters"]["weight_decay"]:  # (nanoGPT's 0 stays 0)
                    group["weight_decay"] = config.weight_decay
            restore_schedule(scheduler, state["schedule_state"], name)
            if not reseeded:
                generator.set_state(state["generator_state"])
                torch.set_rng_state(state["rng_state"])
                restore_accelerator_rng_states(state["device_rng_states"], self.placement, name)
        self.history = list(state["history"])
        how = "carrying on its schedule" if self.same_run else "a fresh schedule over the epochs still to train"
        how += f", drawing from seed {config.seed} from here on" if reseeded else ""
        self.log(f"resumed {shown(name)}: {state['epochs']} epoch(s) done, "
                 f"{state['final_test_accuracy']:.2f}% test accuracy; {how}")

    def schedule_span(self, steps: int) -> int:
        """`steps`, where the one-cycle schedule can span them with this warm-up: OneCycleLR divides by the
        warm-up's steps less one."""
        if self.config.warmup * steps == 1:
            raise UserError(f"a warm-up of exactly one step ({self.config.warmup:g} of {steps} steps) is one the "
                            "one-cycle schedule cannot make: another --batch-size or --epochs changes its length")
        return steps

    def hyperparameters(self, optimizer, scheduler) -> dict:
        """The recipe as the optimizer and scheduler used it: the optimizer's own weight decay; the warm-up only
        where OneCycleLR drove the run, and the momentum range only where it had a momentum (or Adam's first beta)
        to move."""
        config, group = self.config, optimizer.param_groups[0]
        used = {key: getattr(config, key) for key in ("optimizer", "batch_size", "lr", "label_smoothing", "warmup",
                                                      "momentum", "shift", "clean_last_epoch")}
        used |= {"augment": config.augmenting, "weight_decay": group["weight_decay"]}
        if not isinstance(scheduler, OneCycleLR):  # another scheduler in train.py's line
            del used["warmup"], used["momentum"]
        elif "momentum" not in group and "betas" not in group:
            del used["momentum"]
        try:  # a value its checkpoint could not hold is refused before the training, not by every reader after it
            schema.check(used, RECIPE, "")
        except schema.Invalid as error:
            raise UserError(f"the recipe's {error} (a checkpoint could not record it)") from None
        return used

    def describe(self, optimizer, scheduler) -> str:
        """What a run trains, and with what: the network against the budget, where it runs, its dropout, the recipe
        as the optimizer and scheduler use it."""
        config, model, used = self.config, self.model, self.hyperparameters(optimizer, scheduler)
        parameters, widths = count_parameters(model), conv_widths(model)
        momentum = f", momentum {used['momentum'][0]:g}-{used['momentum'][1]:g}" if "momentum" in used else ""
        schedule = f"warm-up {config.warmup:g}" if "warmup" in used else type(scheduler).__name__
        dropouts = sorted({module.p for module in model.modules() if isinstance(module, nn.modules.dropout._DropoutNd)})
        dropout = f"dropout {', '.join(f'{p:g}' for p in dropouts)}" if dropouts else "no dropout layer"  # its own
        augmentation = ("off" if not used["augment"] else "on" if config.augments(config.epochs)
                        else "on (the last epoch on the plain images)")
        return (f"model: {type(model).__name__}{f', conv widths {widths_text(widths)}' if widths else ''}, "
                f"{parameters:,} parameters ({'under' if parameters < BUDGET else 'OVER'} the budget of {BUDGET:,}), "
                f"placement {describe(model)}\n"
                f"training: {config.epochs} epoch(s), {type(optimizer).__name__} (weight decay {used['weight_decay']:g}"
                f"{momentum}), batch {config.batch_size}, peak lr {config.lr:g}, label smoothing "
                f"{config.label_smoothing:g}, {schedule}, {dropout}, "
                f"seed {config.seed}, augmentation {augmentation}")

    def save(self, optimizer, scheduler, generator) -> Path:
        """Write the checkpoint of the epochs so far (a new file after the first, then over it, atomically) and
        its metrics, a CSV file of the same name."""
        self.history[-1] |= {"device_peak_mb": peak_memory_mb(self.placement.accelerator),
                             "lr": optimizer.param_groups[0]["lr"]}  # at the epoch's end
        last, config, model = self.history[-1], self.config, self.model
        state = network_record(model, config.channels, config.dropout) | {
            "model_state_dict": model.state_dict(),
            "optimizer": type(optimizer).__name__,
            "optimizer_state_dict": optimizer.state_dict(),
            "schedule_state": scheduler.state_dict(),
            "generator_state": generator.get_state(),
            "rng_state": torch.get_rng_state(),
            "device_rng_states": accelerator_rng_states(self.placement),
            "device_used": self.placement.short_name,
            "placement": asdict(self.placement),
            "epochs": last["epoch"],
            "planned_epochs": config.epochs,
            "final_test_accuracy": last["test_accuracy"],
            "final_test_loss": last["test_loss"],
            "history": self.history,
            "parameters": count_parameters(model),
            "seed": config.seed,
            "hyperparameters": self.hyperparameters(optimizer, scheduler),
            "torch_version": str(torch.__version__),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.path = save_over(state, self.path) if self.path else save_new(state, config.models_dir,
                                                                             self.placement.short_name)
        replace_atomically(self.path.with_suffix(".csv"), metrics_csv(self.history))
        return self.path


CSV_COLUMNS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds", "images_per_s")


def metrics_csv(history: list) -> bytes:
    """A run's history as a CSV file, one row per epoch, that any spreadsheet or pandas reads (a resumed run's
    earlier epochs without a recorded learning rate leave its cell empty)."""
    rows = [",".join(CSV_COLUMNS)]
    for entry in history:
        images, seconds = entry["curve"][-1][0] if entry["curve"] else 0, entry["train_seconds"]  # last point: all
        rows.append(",".join(f"{value:.6g}" if isinstance(value, float) else str(value) for value in (
            entry["epoch"], entry["train_loss"], entry["train_accuracy"], entry["test_loss"], entry["test_accuracy"],
            entry.get("lr", ""), seconds, round(images / seconds) if seconds else "")))
    return ("\n".join(rows) + "\n").encode()


def tuple_of(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def widths_text(widths) -> str:
    return ",".join(map(str, widths))
