"""A mutation check of the test suite: plant realistic one-line bugs in the product, one at a time, run the
tests that cover that code, and count the bugs the tests catch.

    python bench/mutants.py              # all of them: each verdict, the survivors, the score
    python bench/mutants.py --list       # the planted bugs, numbered
    python bench/mutants.py --only 3 17  # some of them

Every bug is planted in a copy of the working tree (its tracked and new files, with data/ linked in), never in
the tree itself. The tests' files first run on the unchanged copy: a bug only counts against tests that pass
without it. A bug whose text is no longer in its file stops the run with its number: the code moved on, so the entry
must too. A test run that hangs past --timeout counts as caught (CI would fail). The last line reads
`caught C of N planted bugs`.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent


class Mutant(NamedTuple):
    area: str
    bug: str  # what a user would meet
    path: str
    edits: tuple  # (old, new) pairs: each old text must occur exactly once in the file
    tests: str  # pytest arguments: the tests that cover this code


def m(area, bug, path, old, new, tests):
    return Mutant(area, bug, path, ((old, new),), tests)


TRAIN, EVALUATE, DEVICES = "tests/test_train.py", "tests/test_evaluate.py", "tests/test_devices.py"
CRAFTED, RUNS = "tests/test_crafted.py", "tests/test_runs.py"
MUTANTS = [
    m("runs", "--list shows the date a checkpoint records, not the file's date it is sorted by", "evaluate.py",
      "    return (name, date,", '    return (name, state["timestamp"][:16].replace("T", " "),', f"{RUNS} -k list"),
    # train.py: the recipe, the epochs' augmentation, resume and extension
    m("train", "the plain epoch of a several-epoch run comes first instead of last", "train.py",
      "epoch == self.epochs > 1)", "epoch == 1 and self.epochs > 1)", f"{TRAIN} -k which_epochs"),
    m("train", "a resume takes the defaults instead of the run's own recipe and augmentation", "model/checkpoint.py",
      "if key not in config.given and hasattr(config, key)}", 'if key in ("channels", "dropout")}',
      f"{TRAIN} -k resume"),
    m("train", "an extended finished run keeps the whole run's schedule length", "model/checkpoint.py",
      'epochs = config.epochs if self.same_run else config.epochs - state["epochs"]',
      "epochs = config.epochs",
      f"{TRAIN} -k 'resume or extends'"),
    m("train", "the recipe's weight decay never reaches the optimizer", "train.py",
      "weight_decay=config.weight_decay)", "weight_decay=0.0)",
      f"{TRAIN} -k 'recipe or resume'"),
    m("train", "label smoothing never reaches the loss", "train.py",
      "F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)", "F.cross_entropy(logits, target)",
      f"{TRAIN} -k 'recipe or resume'"),
    m("train", "labels are taken in another order than their images", "train.py",
      "order.to(labels.device).split(config.batch_size)", "order.flip(0).to(labels.device).split(config.batch_size)",
      f"{DEVICES} -k loss_reads"),
    m("train", "the learning-rate schedule never advances", "train.py",
      "        scheduler.step()\n", "", f"{TRAIN} -k 'recipe or extends'"),
    m("train", "the test set is evaluated in training mode (batch statistics, dropout)", "model/predict.py",
      "    model.eval()\n    log_probs", "    log_probs",
      f"{TRAIN}::test_one_epoch_reaches_99_and_checkpoint_is_complete"),
    m("train", "the batch shift draws -1 and 0 only", "train.py",
      "torch.randint(-config.shift, config.shift + 1, (2,))", "torch.randint(-config.shift, config.shift, (2,))",
      f"{TRAIN} -k one_pixel"),
    m("train", "--resume of a run that has the epochs asked for trains one more", "model/checkpoint.py",
      'if state["epochs"] >= config.epochs:', 'if state["epochs"] > config.epochs:',
      f"{TRAIN} -k refuses_a_network"),
    m("train", "a resume starts the momentum afresh", "model/checkpoint.py",
      "        restore_optimizer(optimizer, state, name, settings=self.same_run)\n", "", f"{TRAIN} -k resume"),
    m("train", "the batches come in the same order whatever the seed", "train.py",
      "generator = torch.Generator().manual_seed(config.seed)", "generator = torch.Generator().manual_seed(0)",
      f"{TRAIN} -k seed {DEVICES}"),
    # evaluate.py
    m("evaluate", "the recorded figure may be 10 points off", "evaluate.py",
      "TOLERANCE = 0.1  #", "TOLERANCE = 10  #", f"{EVALUATE} -k 'off_by_more or tampered'"),
    m("checkpoint", "a folder's oldest checkpoint is read instead of its newest", "utils/checkpoint.py",
      "path = found[0][1]", "path = found[-1][1]", f"{EVALUATE} -k newest"),
    m("evaluate", "the runner-up printed is the prediction itself", "evaluate.py",
      "probabilities.topk(2).indices[1]", "probabilities.topk(2).indices[0]", f"{EVALUATE} -k 'image or predict'"),
    m("evaluate", "--min-accuracy is not enforced once the recorded figure matches", "evaluate.py",
      "ok = ok and reached", "ok = ok or reached", f"{EVALUATE} -k tampered"),
    m("evaluate", "more and fewer swapped in the difference from the recorded figure", "evaluate.py",
      "'more' if difference > 0 else 'fewer'", "'fewer' if difference > 0 else 'more'", f"{EVALUATE} -k off_by_more"),
    # model/
    m("model", "python -m model --budget N accepts a count of exactly N", "model/__main__.py",
      "within = parameters < args.budget", "within = parameters <= args.budget", "tests/test_model.py -k budget"),
    m("network", "dropout keeps p of the values instead of 1 - p", "utils/cpu_speed.py",
      "round((1 - self.p) * 2**15)", "round(self.p * 2**15)", "tests/test_layers.py"),
    m("network", "the averaged probabilities sum to 5", "model/predict.py",
      "torch.logsumexp(each, 0) - math.log(len(SHIFTS))", "torch.logsumexp(each, 0)",
      f"tests/test_model.py {EVALUATE} -k 'average or evaluation_mode'"),
    m("network", "one of the four shifted views is another's twin", "model/predict.py",
      "SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))", "SHIFTS = ((0, 0), (0, 1), (0, 1), (1, 0), (-1, 0))",
      "tests/test_model.py -k average"),
    m("network", "ReLU before BatchNorm", "model/network.py",
      "return self.bn(conv_and_pool(self.conv, self.pool, x)).relu_()",
      "return self.bn(conv_and_pool(self.conv, self.pool, x).relu())", "tests/test_layers.py tests/test_model.py"),
    m("network", "dropout 0.5 instead of the design's 0.15", "model/network.py",
      "CHANNELS, DROPOUT = (10, 20, 28), 0.15", "CHANNELS, DROPOUT = (10, 20, 28), 0.5", "tests/test_model.py"),
    m("placement", "the split point is off by one (conv2 runs in the late stage)", "model/placement.py",
      "placement.early if index < placement.split else placement.late",
      "placement.early if index < placement.split - 1 else placement.late", "tests/test_placement.py"),
    m("placement", "MPS is chosen over CUDA", "model/placement.py",
      'return "cuda:0" if self.cuda_devices else "mps" if self.mps else None',
      'return "mps" if self.mps else "cuda:0" if self.cuda_devices else None', "tests/test_placement.py"),
    m("placement", "cuda:1 is accepted on a machine with one GPU", "model/placement.py",
      "if index >= machine.cuda_devices:", "if index > machine.cuda_devices:", "tests/test_placement.py"),
    m("placement", "copies back to the host may overlap (read before they land)", "model/placement.py",
      'return source.type == "cpu" and target.type == "cuda"', "return source.type != target.type",
      "tests/test_placement.py"),
    m("placement", "a split past the network's last layer is accepted (nothing left for the CPU)", "model/placement.py",
      "if not 1 <= split < layers:", "if not 1 <= split <= layers:", f"tests/test_placement.py {TRAIN}"),
    m("network", "the classifier is sized for the design's last block, not for the blocks it follows",
      "model/network.py", "features = trunk.eval()(torch.zeros(1, 1, 28, 28)).numel()",
      "features = blocks[-1].bn.num_features * 36", "tests/test_placement.py"),
    m("checkpoint", "a checkpoint's widths are not read back: every reader builds the design's network",
      "model/checkpoint.py", 'model = built(**state["build_model"])',
      'model = built(CHANNELS, state["build_model"]["dropout"])', f"{TRAIN} -k widths"),
    # train.py: torch.optim and its schedule
    m("optimizer", "Nesterov momentum lost", "train.py", "momentum=0.9, nesterov=True, fused=True",
      "momentum=0.9, nesterov=False, fused=True", f"{TRAIN} -k recipe_s_weight_decay"),
    m("schedule", "Adam's first beta is not cycled: it keeps its default", "train.py",
      'cycle_momentum="momentum" in optimizer.defaults or "betas" in optimizer.defaults',
      'cycle_momentum="momentum" in optimizer.defaults', f"{TRAIN} -k recipe_s_flags"),
    m("schedule", "the momentum rises with the learning rate instead of falling", "train.py",
      "max_momentum=config.momentum[0], base_momentum=config.momentum[1]",
      "max_momentum=config.momentum[1], base_momentum=config.momentum[0]", f"{TRAIN} -k recipe_s_flags"),
    m("schedule", "the schedule ends at a hundredth of the peak, not at 1/250,000", "train.py",
      "pct_start=config.warmup,", "pct_start=config.warmup, final_div_factor=4,", f"{TRAIN} -k extends"),
    # the recipe's flags
    m("recipe", "Adam and AdamW start from SGD's peak learning rate", "train.py",
      'PEAK_LR.get(self.optimizer, value) if name == "lr" else value', "value", f"{TRAIN} -k recipe"),
    m("recipe", "--dropout never reaches the network", "train.py",
      "model = network.build_model(config.channels, config.dropout)", "model = network.build_model(config.channels)",
      f"{TRAIN} -k recipe_s_flags"),
    m("recipe", "a flag given again on --resume loses to the recorded value", "model/checkpoint.py",
      "if key not in config.given and hasattr(config, key)}", "if hasattr(config, key)}", f"{TRAIN} -k carries_on"),
    m("recipe", "a resumed run records the command line's seed, not its own", "model/checkpoint.py",
      'recorded = {"optimizer": state["optimizer"].lower(), "seed": state["seed"],',
      'recorded = {"optimizer": state["optimizer"].lower(),', f"{TRAIN} -k carries_on"),
    # placing an arbitrary nn.Sequential
    m("placement", "the input does not move to the late device at the split", "model/placement.py",
      "+ ([(model[placement.split], placement.late)] if placement.hybrid else [])", "+ []",
      "tests/test_placement.py"),
    m("placement", "the log puts every layer on the first layer's device", "model/placement.py",
      "if groups and groups[-1][0] == device:", "if groups:", "tests/test_placement.py"),
    m("placement", "hybrid placement is accepted for a model that is not a sequence", "model/placement.py",
      'if mode == "hybrid" and not sequence:', "if False:", "tests/test_placement.py"),
    m("placement", "auto splits a model that is not a sequence", "model/placement.py",
      'if mode == "single" or mode == "auto" and (chosen == "cpu" or not sequence):',
      'if mode == "single" or mode == "auto" and chosen == "cpu":', "tests/test_placement.py"),
    # the record of the layers
    m("layers", "a checkpoint's layers are not compared with the network build_model makes", "model/checkpoint.py",
      "        if here.get(name) != there.get(name):", "        if False:", f"{TRAIN} -k 'refuses or first_layer'"),
    m("layers", "the layer named is the last that differs, not the first", "model/checkpoint.py",
      "for name in [*there, *(name for name in here if name not in there)]:",
      "for name in reversed([*there, *(name for name in here if name not in there)]):", f"{TRAIN} -k first_layer"),
    m("layers", "the record of the layers is not checked against the weights", "utils/checkpoint.py",
      "Tensor(WEIGHTS, (tuple(shape),))", "Tensor(WEIGHTS, shapes)",
      f"{TRAIN} -k refuses"),
    m("layers", "an earlier version's classifier is read as its last block", "utils/checkpoint.py",
      're.sub(r"^fc\\.", f"{blocks}.", name)', 're.sub(r"^fc\\.", f"{blocks - 1}.", name)',
      "tests/test_compatibility.py"),
    # issue 38's survivor: the normalization's constants swapped
    m("predict", "the normalization's mean and standard deviation swapped", "model/predict.py",
      "MEAN, STD = 0.1307, 0.3081", "MEAN, STD = 0.3081, 0.1307", "tests/test_compatibility.py"),
    # utils/checkpoint.py
    m("checkpoint", "a recorded accuracy over 100% is accepted", "utils/checkpoint.py",
      '"final_test_accuracy": Number(0, 100)', '"final_test_accuracy": Number(0, 1e12)',
      f"{TRAIN} -k bad_resume_files"),
    m("checkpoint", "checkpoints are unpickled with code allowed", "utils/checkpoint.py",
      'map_location="cpu", weights_only=True)', 'map_location="cpu", weights_only=False)',
      f"{TRAIN} -k bad_resume_files"),
    m("checkpoint", "load_model hands back the network in training mode", "model/checkpoint.py",
      "return model.eval(), state", "return model, state", f"{EVALUATE} -k 'image or predict'"),
    m("checkpoint", "a zip's oldest checkpoint is read", "utils/checkpoint.py",
      "(member.date_time, member.filename), reverse=True)", "(member.date_time, member.filename))",
      f"{EVALUATE} -k zip"),
    m("checkpoint", "a checkpoint recording fewer parameters than its weights hold passes", "model/checkpoint.py",
      'if count_parameters(model) != state["parameters"]:', 'if count_parameters(model) < state["parameters"]:',
      f"{EVALUATE} -k resume_refuses"),
    # issue 39: the schema reader and the other failures of the fourth audit
    m("schema", "a container met twice (shared references) is read again", "utils/schema.py",
      "if value and id(value) in self.seen:", "if False:", f"{CRAFTED} -k crafted_checkpoints"),
    m("schema", "tensors that overlap in memory are accepted", "utils/schema.py",
      "if any(start < other_end and other_start < end for other_start, other_end in used):", "if False:",
      f"{CRAFTED} -k crafted_checkpoints"),
    m("schema", "expanded and strided views are accepted", "utils/schema.py",
      "if not value.is_contiguous() or end > storage.nbytes():", "if end > storage.nbytes():",
      f"{CRAFTED} -k crafted_checkpoints"),
    m("schema", "unknown entries are passed over", "utils/schema.py",
      'refuse(where, f"holds an unknown entry {shown(repr(key), 60)}")', "continue",
      f"{CRAFTED} -k crafted_checkpoints"),
    m("schema", "a list's length is not checked", "utils/schema.py",
      "if type(value) not in (list, tuple) or not self.shortest <= len(value) <= self.longest:",
      "if type(value) not in (list, tuple):", f"{CRAFTED} -k crafted_checkpoints"),
    m("schema", "weights that overflow on a plain digit are accepted", "model/predict.py",
      "return bool(torch.isfinite(plain_digit_logits(model)).all())", "return True", f"{CRAFTED} -k crafted_checkpoints"),
    m("schedule", "a warm-up of exactly one step reaches OneCycleLR", "model/checkpoint.py",
      "if self.config.warmup * steps == 1:", "if False:", f"{CRAFTED} -k warm_up"),
    m("evaluate", "--summary opens a FIFO and waits", "evaluate.py",
      'if kind not in ("file", "missing"):  # a FIFO', "if False:  # a FIFO",
      f"{CRAFTED} -k fifo"),
    m("schema", "a checkpoint of an optimizer added to OPTIMIZERS is called damaged", "utils/checkpoint.py",
      '"optimizer": Text(40), "batch_size"', '"optimizer": Text(5, ("sgd", "adam", "adamw")), "batch_size"',
      f"{TRAIN} -k optimizer_added"),
    m("schema", "a checkpoint of another torch scheduler is called damaged", "utils/checkpoint.py",
      ", rest=Either((\n    SETTINGS, Seq(Record(COUNTERS, optional=frozenset(COUNTERS), rest=SETTINGS), 8))))", ")",
      f"{TRAIN} -k another_torch_scheduler"),
    m("schedule", "a resume tells the same run by OneCycleLR's total_steps alone", "model/checkpoint.py",
      'steps_taken(schedule) in (state["epochs"] * steps_per_epoch,',
      'schedule.get("total_steps") in (config.epochs * steps_per_epoch,', f"{TRAIN} -k another_torch_scheduler"),
    m("schedule", "a run interrupted under torch 2.6 is refused: its scheduler's verbose taken for a setting",
      "utils/checkpoint.py", ', "verbose": Either((Kind(bool), Text(20)))}', "}",
      "tests/test_compatibility.py -k oldest_torch"),
    m("schedule", "a resume takes a scheduler stepped once an epoch for another run's: a fresh schedule",
      "model/checkpoint.py", 'state["epochs"])  # or stepped once an epoch', "-1)", f"{TRAIN} -k stepped_once"),
    m("schema", "a one-cycle schedule without its length resumes", "utils/checkpoint.py",
      '"schedule_state has no total_steps": "total_steps" not in schedule',
      '"schedule_state has no total_steps": False', f"{TRAIN} -k bad_resume_files"),
    m("network", "a compiled network's checkpoint holds torch.compile's layer names", "model/checkpoint.py",
      "        model = uncompiled(model)  # checked as it is", "        pass  # checked as it is",
      f"{TRAIN} -k compiled"),
    m("network", "a checkpoint loads into torch.compile's wrapper, not the network", "model/checkpoint.py",
      "    model = uncompiled(model)\n", "", f"{TRAIN} -k compiled"),
    m("placement", "--split with a model of its own is recorded and has no effect", "model/placement.py",
      "if split is not None and not sequence:", "if False:", f"{TRAIN} -k split_that_would"),
    m("placement", "a checkpoint of one's own nn.Module is refused for the split it records", "model/checkpoint.py",
      'split = state["placement"]["split"] if splittable(model) else None', 'split = state["placement"]["split"]',
      f"{TRAIN} -k split_that_would"),
    m("placement", "--split with --placement single is recorded and has no effect", "model/placement.py",
      'if split is not None and mode == "single":', "if False:", f"{TRAIN} -k split_that_would"),
    m("network", "the log names the recipe's dropout for a network without any", "model/checkpoint.py",
      '{schedule}, {dropout}, "', '{schedule}, dropout {config.dropout:g}, "', f"{TRAIN} -k split_that_would"),
    m("recipe", "the recipe keeps a dropout of its own: editing the network's DROPOUT changes no run", "train.py",
      '"dropout": network.DROPOUT,  # before', '"dropout": 0.15,  # before', "tests/test_change_it.py -k defaults"),
    m("flags", "--channels' help names the widths as a literal", "train.py",
      "{','.join(map(str, network.CHANNELS))}", "10,20,28", "tests/test_change_it.py -k defaults"),
    m("schedule", "the log and the record claim OneCycleLR's warm-up and momentum for another scheduler",
      "model/checkpoint.py", "if not isinstance(scheduler, OneCycleLR):", "if False:",
      f"{TRAIN} -k another_torch_scheduler"),
    m("resume", "a checkpoint's fused or foreach flag must match the code's optimizer", "utils/checkpoint.py",
      'if key not in ("params", *HOW))', 'if key != "params")', f"{TRAIN} -k another_implementation"),
    m("resume", "a hybrid run resumes on the default split, not its own", "model/checkpoint.py",
      '        recorded["split"] = placement["split"]\n', "        pass\n", f"{TRAIN} -k own_split"),
    m("resume", "a hybrid run resumed with --placement single is refused for the split it recorded",
      "model/checkpoint.py", ' and config.placement != "single":  # a hybrid', ":  # a hybrid", f"{TRAIN} -k own_split"),
    m("schema", "a recipe without a warm-up is called damaged", "utils/checkpoint.py",
      '"warmup": Number(0, 0.99),', '"warmup": Number(0, 0.99, above_low=True),', f"{TRAIN} -k without_a_warm_up"),
    m("recipe", "a recipe value no checkpoint could record trains, and every reader calls it damaged",
      "model/checkpoint.py", 'schema.check(used, RECIPE, "")', "pass", f"{TRAIN} -k no_checkpoint_could"),
    m("train", "a diverging run goes on with NaN weights", "train.py", "if not math.isfinite(totals[0]):",
      "if False:", f"{TRAIN} -k diverging"),
    m("network", "a network with a lazy layer stops evaluate.py with a traceback", "model/checkpoint.py",
      "    plain_digit_logits(model)\n    return model\n", "    return model\n", f"{TRAIN} -k lazy_layer"),
    m("resume", "a resume gives every group of the optimizer the run's weight decay", "model/checkpoint.py",
      'if group["weight_decay"] == state["hyperparameters"]["weight_decay"]:', "if True:", f"{TRAIN} -k two_groups"),
    m("resume", "--weight-decay given again on a resume is ignored", "model/checkpoint.py",
      '                group["weight_decay"] = config.weight_decay\n', "                pass\n",
      f"{TRAIN} -k 'two_groups or weight_decay'"),
    m("resume", "a finished run extended under a chainable scheduler goes on at its last learning rate, about 0",
      "model/checkpoint.py", "settings=self.same_run)", "settings=True)", f"{TRAIN} -k finished_run_of_another"),
    m("resume", "an interrupted run resumed by code that builds another scheduler carries on under it in silence",
      "utils/checkpoint.py", "missing = [name for name in recorded if name not in built and name not in COUNTERS]",
      "missing = []", f"{TRAIN} -k resumed_under_another"),
    m("resume", "an interrupted run resumed by code that builds its scheduler with other settings carries on under them",
      "utils/checkpoint.py", "    if built != recorded:\n        raise Differs", "    if False:\n        raise Differs",
      f"{TRAIN} -k resumed_under_another"),
    m("resume", "an interrupted run's schedule starts again from its first step", "model/checkpoint.py",
      '            restore_schedule(scheduler, state["schedule_state"], name)\n', "",
      f"{TRAIN} -k 'another_torch_scheduler or interrupted' {DEVICES} -k interrupted"),
    m("network", "--channels given to a network of its own widths is recorded and ignored", "model/checkpoint.py",
      '                return "--channels"', "                return None", f"{TRAIN} -k ignores_them"),
    m("network", "--dropout given to a network that ignores it is recorded and ignored", "model/checkpoint.py",
      '                return "--dropout"', "                return None", f"{TRAIN} -k ignores_them"),
    m("network", "checking --channels and --dropout draws from the run's random numbers: other weights",
      "model/checkpoint.py", "    with torch.random.fork_rng(devices=[]):", "    if True:", f"{TRAIN} -k ignores_them"),
    m("network", "every run counts --channels as given: one's own network is refused for widths never asked for",
      "model/checkpoint.py", "    config.given = given\n", "    pass\n", f"{TRAIN} -k 'lazy_layer or ignores_them'"),
    m("schema", "a value one option of a schema did not fit is 'met before' for the next: SequentialLR is damaged",
      "utils/schema.py", "                walk.forget(mark)\n", "                pass\n",
      f"{TRAIN} -k other_schedulers"),
    m("resume", "SequentialLR's own schedulers are compared with their places: an interrupted run is refused",
      "utils/checkpoint.py", "if type(built) is list and type(recorded) is list and len(built) == len(recorded):",
      "if False:", f"{TRAIN} -k other_schedulers"),
    m("resume", "CosineAnnealingWarmRestarts' place in its period is compared as a setting: a resume is refused",
      "utils/checkpoint.py", '"T_cur": Number(0, 2**40), "T_i": Number(1, 2**40, whole=True), ', "",
      f"{TRAIN} -k other_schedulers"),
    m("resume", "a tampered period length in a scheduler's record is carried on: a ZeroDivisionError traceback",
      "utils/checkpoint.py", '"T_i": Number(1, 2**40, whole=True)', '"T_i": Number(-2**40, 2**40, whole=True)',
      f"{TRAIN} -k tampered_place"),
    m("resume", "a tampered step count of SequentialLR's own scheduler is carried on", "utils/checkpoint.py",
      "Seq(Record(COUNTERS, optional=frozenset(COUNTERS), rest=SETTINGS), 8)", "Seq(Record({}, rest=SETTINGS), 8)",
      f"{TRAIN} -k bad_resume_files"),
    m("schema", "MultiStepLR's milestones (counts) make its checkpoints damaged for every reader",
      "utils/checkpoint.py", "Seq(PLAIN, 16), Mapping(STEPS, STEPS, 64)))", "Seq(PLAIN, 16)))", f"{TRAIN} -k other_schedulers"),
    m("schema", "ChainedScheduler, which keeps no last_epoch of its own, makes its checkpoints damaged",
      "utils/checkpoint.py", "optional=frozenset(COUNTERS | ONE_CYCLE)",
      'optional=frozenset(COUNTERS | ONE_CYCLE) - {"last_epoch"}',
      f"{TRAIN} -k other_schedulers"),
    m("resume", "ChainedScheduler's steps are not counted: an interrupted run gets a fresh schedule",
      "utils/checkpoint.py", 'schedule.get("last_epoch", first.get("last_epoch"))', 'schedule.get("last_epoch")',
      f"{TRAIN} -k other_schedulers"),
    m("schema", "a schedule without a step count is read", "utils/checkpoint.py",
      '"schedule_state has no step count (last_epoch)": steps is None,',
      '"schedule_state has no step count (last_epoch)": False,', f"{TRAIN} -k bad_resume_files"),
    m("bench", "the training benchmark's single-device runs pass --split, which train.py refuses",
      "bench/bench_train.py", '*(["--split", str(split)] if mode == "hybrid" else [])', '"--split", str(split)',
      "tests/test_placement.py -k benchmark_runs"),
    m("schema", "a network's bool buffer makes its checkpoint damaged for every reader", "utils/checkpoint.py",
      "torch.int8, torch.uint8, torch.bool)", "torch.int8, torch.uint8)",
      f"{TRAIN} -k buffers_of_any_kind"),
    m("network", "a layer of another kind of numbers is converted in silence", "model/checkpoint.py",
      "if recorded.dtype != weights[name].dtype:", "if False:", f"{TRAIN} -k buffers_of_any_kind"),
    m("network", "a network that does not give ten logits a digit trains", "model/checkpoint.py",
      "if shape != (3, 10):", "if False:", f"{TRAIN} -k ten_logits"),
    m("resume", "--seed on a resume is recorded while the checkpoint's generators go on", "model/checkpoint.py",
      "            if not reseeded:\n", "            if True:\n", f"{DEVICES} -k interrupted"),
    m("evaluate", "a flag that --image or --list does not read is ignored in silence", "evaluate.py",
      "        if ignored:\n            parser.error(f\"{', '.join(ignored)}: not read", "        if False:\n            parser.error(f\"{', '.join(ignored)}: not read", f"{EVALUATE} -k mode_does_not"),
    m("evaluate", "a summary's missing folder is found after the evaluation", "evaluate.py",
      'if kind_of(folder, "write in") != "folder":', "if False:",
      f"{EVALUATE} -k missing_folder"),
    m("flags", "--lr has no upper bound", "utils/flags.py", "in_range(float, 0, MAX_LR, above=True",
      "in_range(float, 0, None, above=True", f"{TRAIN} -k bad_flags"),
    m("flags", "a flag's range takes its upper end as out of range", "utils/flags.py",
      "else value <= high)", "else value < high)", f"{TRAIN} -k 'bad_flags or ends_of'"),
    m("flags", "--dropout 1 (every input dropped) is taken", "utils/flags.py",
      "(value < high if below", "(value <= high if below", f"{TRAIN} -k bad_flags"),
    m("images", "a decoder's own error type is a traceback", "utils/images.py",
      "except Exception as error:  # damaged data", "except (OSError, SyntaxError, ValueError) as error:  # damaged data",
      f"{CRAFTED} -k decoder"),
    m("draw", "Content-Length is read as int() reads it", "draw.py",
      'if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,12}", lengths[0]):', "if False:",
      f"{CRAFTED} -k content_lengths"),
    m("draw", "a stalled body gets no answer", "draw.py", "except TimeoutError:", "except ValueError:",
      f"{CRAFTED} -k content_lengths"),
    m("draw", "a client that leaves leaves a traceback", "draw.py",
      "if not isinstance(error, (ConnectionError, TimeoutError)):", "if True:", f"{CRAFTED} -k quiet"),
    m("draw", "the listen backlog is socketserver's 5", "draw.py", "request_queue_size = 256", "request_queue_size = 5",
      f"{CRAFTED} -k quiet"),
    # issue 40: runs a user can compare
    m("runs", "the CSV's learning rate is the peak, not the epoch's last", "model/checkpoint.py",
      '"lr": optimizer.param_groups[0]["lr"]}', '"lr": optimizer.defaults["lr"]}', f"{RUNS} -k csv"),
    m("runs", "the CSV holds the last epoch alone", "model/checkpoint.py",
      "metrics_csv(self.history))", "metrics_csv(self.history[-1:]))", f"{RUNS} -k csv"),
    m("runs", "images/s is images times seconds", "model/checkpoint.py",
      "round(images / seconds) if seconds", "round(images * seconds) if seconds", f"{RUNS} -k csv"),
    m("runs", "--list shows a folder's checkpoints oldest first", "utils/checkpoint.py",
      "for mtime, file in in_folder(path))", "for mtime, file in reversed(in_folder(path)))", f"{RUNS} -k list"),
    m("runs", "a damaged checkpoint stops the list", "evaluate.py",
      "rows.append((shown(name, 60), date, f\"damaged: {str(error).split(': ', 1)[-1]}\"))", "raise",
      f"{RUNS} -k list"),
    m("draw", "a multipart form is read as if it were the image", "draw.py",
      'if not content_type.lower().startswith("multipart/form-data"):', "if True:", f"{RUNS} -k multipart"),
    m("draw", "a wrong method at a known path is 404", "draw.py", "if path not in ROUTES:", "if True:",
      f"{RUNS} -k multipart"),
    m("draw", "405's Allow header names every method, not the path's", "draw.py",
      'self.send_header("Allow", ROUTES.get(urlsplit(self.path).path, "GET, HEAD, POST"))',
      'self.send_header("Allow", "GET, HEAD, POST")', f"{RUNS} -k multipart"),
    # utils/data.py
    m("data", "the training labels are read in reverse order", "utils/data.py",
      "return MNIST(train.data.unsqueeze(1), train.targets,", "return MNIST(train.data.unsqueeze(1), train.targets.flip(0),",
      "tests/test_data.py"),
    m("data", "a file with bytes past MNIST's data is accepted before hashing", "utils/data.py",
      "    if size != expected:", "    if size < expected:", "tests/test_data.py"),
    m("data", "a dangling symlink to a data file counts as missing", "utils/data.py",
      "missing = [name for name in SHA256 if not os.path.lexists(raw / name)]",
      "missing = [name for name in SHA256 if not os.path.exists(raw / name)]", "tests/test_data.py"),
    # utils/augmentation.py
    m("augmentation", "the rotation is read in radians (up to 6 radians, not 6 degrees)", "utils/augmentation.py",
      "angle = uniform(n) * math.radians(config.rotation)", "angle = uniform(n) * config.rotation",
      "tests/test_augmentation.py"),
    m("augmentation", "the translation is half the stated one", "utils/augmentation.py",
      "shift = uniform(n, 2) * config.translation * 2", "shift = uniform(n, 2) * config.translation",
      "tests/test_augmentation.py"),
    m("augmentation", "the shift's second row takes the x shift: every digit moves along the diagonal",
      "utils/augmentation.py", "torch.stack([sin, cos, shift[:, 1]], 1)", "torch.stack([sin, cos, shift[:, 0]], 1)",
      "tests/test_augmentation.py"),
    m("augmentation", "the zoom only enlarges", "utils/augmentation.py",
      "zoom = 1 + uniform(n) * config.scale", "zoom = 1 + uniform(n).abs() * config.scale",
      "tests/test_augmentation.py"),
    # utils/files.py
    m("errors", "a program's lines reach a pipe or a CI log only when it ends", "utils/errors.py",
      'errors="backslashreplace", line_buffering=True)', 'errors="backslashreplace")',
      "tests/test_untrusted.py -k cut_short"),
    m("files", "a live run's temporary files are removed as leftovers", "utils/files.py",
      "pid.isdigit() and not process_alive(int(pid))", "pid.isdigit()", "tests/test_files.py"),
    m("files", "the leftovers of killed runs are no longer cleaned", "utils/files.py",
      "    remove_leftovers(folder)\n", "", "tests/test_files.py"),
    m("files", "a folder that cannot be written is found only when the work is done", "utils/files.py",
      '    with reporting("write in", folder), temporary_file(folder, ".probe", b""):\n        pass\n', "",
      "tests/test_files.py"),
    m("data", "a fetch starts on a disk too small for MNIST", "utils/data.py",
      "        if free < needed:", "        if free < 0:", "tests/test_data.py"),
    m("files", "a FIFO or a device passes for a regular file (its reader blocks or never ends)", "utils/files.py",
      'if kind == "file":\n        return Path(path)',
      'if kind not in ("missing", "folder"):\n        return Path(path)', "tests/test_paths.py"),
    m("train", "--resume reads a folder or a CI artifact as if it were the checkpoint itself", "model/checkpoint.py",
      "with checkpoint_file(config.resume, log) as (file, name):\n"
      "        state = load_checkpoint(file, name)",
      "state, name = load_checkpoint(config.resume), config.resume", "tests/test_paths.py -k resume"),
    m("files", "macOS ._ files count as checkpoints", "utils/files.py",
      'return not path.name.startswith(".")', 'return not path.name.startswith(".partial")',
      f"{EVALUATE} -k newest"),
    m("files", "a new checkpoint may replace one saved in the same second", "utils/files.py",
      "os.link(temporary, target)", "os.replace(temporary, target)",
      f"tests/test_files.py {TRAIN}::test_two_saves_in_one_second_do_not_collide"),
    # utils/images.py
    m("images", "a photo's EXIF orientation is ignored", "utils/images.py",
      "image = ImageOps.exif_transpose(image)", "image = image", f"{EVALUATE} -k 'image or orientation'"),
    m("images", "digits are centred by their box, not their centre of mass", "utils/images.py",
      "top = int(np.clip(round(FIELD / 2 - centre_y), 0, FIELD - box.shape[0]))",
      "top = (FIELD - box.shape[0]) // 2", f"{EVALUATE} -k round_trip"),
    m("images", "digits fill the whole 28x28 field instead of a 20x20 box", "utils/images.py",
      "BOX, FIELD = 20, 28", "BOX, FIELD = 28, 28", f"{EVALUATE} -k 'round_trip or image'"),
    m("images", "dark-on-light drawings are not inverted", "utils/images.py",
      "np.abs(ink, out=ink)", "np.maximum(ink, 0, out=ink)", f"{EVALUATE} -k 'image or drawn'"),
    m("images", "a straight stroke (a 1) is never widened: the crop's border counts as ink", "utils/images.py",
      "mask = F.pad((ink > 0).float(), [1] * 4)", "mask = (ink > 0).float()", f"{EVALUATE} -k 'made_the_way'"),
    m("images", "thin pens are widened to half MNIST's stroke width", "utils/images.py",
      "STROKE = 0.1", "STROKE = 0.05", f"{EVALUATE} -k 'image or drawn or made_the_way'"),
    m("images", "soft (blurred) strokes stay faint", "utils/images.py",
      "box = box / box.max() * 255", "box = box", f"{EVALUATE} -k 'image or drawn or made_the_way or soft'"),
    m("images", "paper texture and shadows count as ink", "utils/images.py",
      "INK_THRESHOLD = 0.2", "INK_THRESHOLD = 0.02", f"{EVALUATE} -k 'image or drawn or made_the_way or paper'"),
    # utils/plotting.py: what the pictures count and pick
    m("plotting", "the confusion matrix is transposed (a row per prediction)", "utils/plotting.py",
      "matrix.index_put_((labels, predictions)", "matrix.index_put_((predictions, labels)", "tests/test_plotting.py"),
    m("plotting", "the mistakes shown are the least confident ones", "utils/plotting.py",
      "confidence[wrong].argsort(descending=True)", "confidence[wrong].argsort()", "tests/test_plotting.py"),
    # run_pipeline.py and the job summary
    m("pipeline", "the demo alone ignores training's flags in silence", "run_pipeline.py",
      "if name not in DEMO_READS]", "if name in ()]", "tests/test_pipeline.py -k bad_flags"),
    m("pipeline", "a run below its bar only says so and exits 0", "run_pipeline.py",
      'raise UserError(f"test accuracy', 'print(f"test accuracy', "tests/test_pipeline.py -k end_to_end"),
    m("job summary", "a parameter count at the budget passes", "evaluate.py",
      "verdict(state['parameters'] < budget)", "verdict(state['parameters'] <= budget)",
      "tests/test_workflow.py -k bar_s_wrong_side"),
    m("job summary", "an accuracy exactly at the bar fails", "evaluate.py",
      "verdict(accuracy >= min_accuracy)", "verdict(accuracy > min_accuracy)",
      "tests/test_workflow.py -k bar_s_wrong_side"),
    # draw.py: the server's answers
    m("draw", "an upload over the limit is read and decoded", "draw.py",
      "if not 0 < length <= MAX_UPLOAD:", "if not 0 < length:", "tests/test_draw.py -k bad_requests"),
    m("draw", "a method the server does not serve is http.server's 501, in HTML", "draw.py",
      "if code == HTTPStatus.NOT_IMPLEMENTED:", "if False:", "tests/test_draw.py -k bad_requests"),
    # utils/errors.py: the Ctrl-C guard
    m("errors", "the Ctrl-C guard is armed in any program that imports the code", "utils/__init__.py",
      "if SCRIPT:\n    guard_ctrl_c()\n", "guard_ctrl_c()\nif SCRIPT:\n", f"{TRAIN} -k 'ctrl_c or collector'"),
    m("errors", "the Ctrl-C guard is never armed", "utils/__init__.py", "    guard_ctrl_c()\n", "    pass\n",
      f"{TRAIN} -k ctrl_c"),
    m("errors", "a script works with the cycle collector off (cycles pile up while draw.py serves)", "utils/errors.py",
      "        gc.enable()\n", "        pass\n", f"{TRAIN} -k collector"),
    m("errors", "a script of the user's own in the repository's folder is taken for one of its programs",
      "utils/errors.py", "Path(name).resolve() in [repository / one for one in SCRIPTS]",
      "Path(name).resolve().parent == repository",
      f"{TRAIN} -k 'keeps or collector'"),
    m("errors", "code imported by another program loses its cycle collector", "utils/__init__.py",
      "    guard_ctrl_c()\n    gc.disable()\n", "    guard_ctrl_c()\ngc.disable()\n", f"{TRAIN} -k collector"),
]


def working_copy(target: Path) -> None:
    """The files a clone of this working tree would hold (tracked and new, not ignored), and the data folder linked."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    if (REPO / "data").is_dir():
        (target / "data").symlink_to(REPO / "data")
    (target / "models").mkdir(exist_ok=True)


def run_tests(copy: Path, tests: str, timeout: float) -> tuple[str, str]:
    """(verdict, detail): "passed", "failed" with the first failing test, "hung", or "error" with pytest's words."""
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}  # no stale .pyc of a mutated file survives its restoring
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", "-m", "slow or not slow",
               *shlex.split(tests)]  # both tiers
    try:
        result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hung", f"no result in {timeout:.0f} s"
    if result.returncode == 0:
        return "passed", ""
    if result.returncode == 1:
        failed = re.search(r"^FAILED (\S+)", result.stdout, re.MULTILINE)
        return "failed", failed[1] if failed else "a test failed"
    lines = (result.stdout + result.stderr).strip().splitlines()
    return "error", f"pytest exit {result.returncode}: {lines[-1] if lines else ''}"


def plant(copy: Path, number: int, mutant: Mutant) -> str:
    """Apply the mutant's edits in the copy; return the file's original text."""
    path = copy / mutant.path
    original = text = path.read_text()
    for old, new in mutant.edits:
        if text.count(old) != 1:
            raise SystemExit(f"error: bug {number} ({mutant.bug}): {old!r} occurs {text.count(old)} times in "
                             f"{mutant.path}, not once; update its entry in bench/mutants.py")
        text = text.replace(old, new)
    path.write_text(text)
    return original


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the planted bugs and stop")
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="plant only these bugs (numbers from --list)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a test run may take (default: %(default)s)")
    args = parser.parse_args(argv)
    numbered = list(enumerate(MUTANTS, 1))
    if args.list:
        for number, mutant in numbered:
            print(f"{number:3}  {mutant.area:13} {mutant.bug}  [{mutant.path}; {mutant.tests}]")
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(range(1, len(MUTANTS) + 1)))
        if unknown:
            parser.error(f"--only: no bug numbered {', '.join(map(str, unknown))} (1 to {len(MUTANTS)})")
        numbered = [(number, mutant) for number, mutant in numbered if number in args.only]

    stale = [f"bug {number} ({mutant.bug}): {old!r} occurs {(REPO / mutant.path).read_text().count(old)} times in "
             f"{mutant.path}" for number, mutant in numbered for old, _ in mutant.edits
             if (REPO / mutant.path).read_text().count(old) != 1]
    if stale:  # before any test runs: an entry the code has moved away from would stop the run halfway
        raise SystemExit("error: update these entries in bench/mutants.py, each text must occur once:\n"
                         + "\n".join(stale))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutants-") as folder:
        copy = Path(folder)
        working_copy(copy)
        files = sorted({word.split("::")[0] for _, mutant in numbered for word in shlex.split(mutant.tests)
                        if word.split("::")[0].endswith(".py")})
        verdict, detail = run_tests(copy, " ".join(files), args.timeout)  # every selection's whole file, unmutated
        if verdict != "passed":
            raise SystemExit(f"error: the tests fail without any bug planted: {detail or verdict}")
        print(f"the tests pass unchanged ({time.perf_counter() - started:.0f} s); planting {len(numbered)} bug(s)",
              flush=True)
        survivors = []
        for number, mutant in numbered:
            original = plant(copy, number, mutant)
            began = time.perf_counter()
            try:
                verdict, detail = run_tests(copy, mutant.tests, args.timeout)
            finally:
                (copy / mutant.path).write_text(original)
            if verdict == "error":
                raise SystemExit(f"error: bug {number} ({mutant.bug}): {detail}")
            outcome = {"failed": f"caught by {detail}", "hung": f"caught: {detail}", "passed": "SURVIVED"}[verdict]
            print(f"{number:3}  {mutant.area:13} {mutant.bug}: {outcome} ({time.perf_counter() - began:.0f} s)",
                  flush=True)
            if verdict == "passed":
                survivors.append((number, mutant))
    caught = len(numbered) - len(survivors)
    print(f"\n{time.perf_counter() - started:.0f} s in all; survivors: {len(survivors)}")
    for number, mutant in survivors:
        print(f"{number:3}  {mutant.area}: {mutant.bug} ({mutant.path}; ran {mutant.tests})")
    print(f"caught {caught} of {len(numbered)} planted bugs ({caught / len(numbered):.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
