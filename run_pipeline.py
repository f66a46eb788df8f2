"""The whole story in one run: data, what the augmentation does, training, checkpoint, accuracy check,
pictures and a summary.

    python run_pipeline.py --epochs 1 --aug-samples 3 --aug-per-sample 5   # the complete pipeline
    python run_pipeline.py --aug-samples 3 --aug-per-sample 5              # the augmentation demo alone
    python run_pipeline.py --epochs 1 --samples-dir docs/images --fixed-names  # the README's pictures

Without --epochs (or with --epochs 0) it draws the augmentation pictures and trains nothing.

It takes every flag train.py takes and trains with the same engine (train.train).
"""
import time

# utils first: importing it arms the Ctrl-C guard before torch loads (utils/__init__.py)
from utils import flags
from utils.errors import OneLineErrors, UserError, run_cli, shown

import torch

import train
from model.predict import evaluate
from utils.augmentation import augment
from utils.data import load_mnist
from utils.files import writable_folder

# What the augmentation demo alone reads: with --epochs 0 any other flag (training's) is refused, not ignored
DEMO_READS = ("epochs", "seed", "data_dir", "aug_samples", "aug_per_sample", "samples_dir", "fixed_names")
PICTURES = flags.in_range(int, 1, 64)  # per axis of the augmentation grid: beyond 64 it is no longer readable


def parse_args(argv):
    parser = OneLineErrors(description="Augmentation pictures, then (with --epochs N) training, checkpoint, "
                                       "accuracy check, pictures of the trained model, summary.")
    train.add_training_flags(parser, epochs_type=flags.in_range(int, 0, flags.MAX_EPOCHS), epochs_default=0,
                             epochs_help="epochs to train (default: 0: the augmentation demo alone, no training)")
    parser.add_argument("--aug-samples", type=PICTURES, default=3,
                        help="digits shown in the augmentation grid (1-64, default: %(default)s)")
    parser.add_argument("--aug-per-sample", type=PICTURES, default=5,
                        help="augmentations drawn per digit (1-64, default: %(default)s)")
    parser.add_argument("--min-accuracy", type=flags.percentage, default=95.0,
                        help="test accuracy (%%) the run must reach (default: %(default)s)")
    parser.add_argument("--samples-dir", default="samples", help="where pictures go (default: %(default)s)")
    parser.add_argument("--fixed-names", action="store_true", help="save the pictures as augmentation.png, ... "
                        "replacing earlier ones, rather than under new timestamped names (the README's pictures)")
    args = parser.parse_args(argv)
    if args.epochs == 0:  # the demo alone: a flag that only training reads would be silently ignored
        ignored = parser.given(args, [name for name in vars(args) if name not in DEMO_READS])
        if ignored:
            parser.error(f"{', '.join(ignored)}: for training only; add --epochs N (without it, run_pipeline.py "
                         f"draws the augmentation pictures alone)")
    return args


def augmentation_demo(data, samples, per_sample, seed, folder, fixed=False):
    """Draw `samples` training digits of different classes and `per_sample` augmentations of each, with the
    very function and settings that training uses."""
    from utils.plotting import augmentation_grid  # matplotlib costs about a second: only when drawing

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.train_labels), generator=generator)
    picked, seen = [], set()
    for index in order.tolist():  # distinct digits first, repeats once all ten are shown
        if data.train_labels[index].item() not in seen or len(seen) == 10:
            picked.append(index)
            seen.add(data.train_labels[index].item())
        if len(picked) == samples:
            break
    originals = data.train_images[picked].float() / 255
    augmented = augment(originals.repeat_interleave(per_sample, 0), generator=generator)
    return augmentation_grid(originals, augmented.view(samples, per_sample, 1, 28, 28), data.train_labels[picked],
                             folder, fixed)


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    config = train.Config(**{name: value for name, value in vars(args).items()
                             if name in train.Config.__dataclass_fields__})  # the training flags
    writable_folder(args.samples_dir)  # before any work: a file or a read-only folder there fails now, not later

    print("== 1. data")
    data = load_mnist(config.data_dir)

    print(f"== 2. augmentation: {args.aug_samples} digits x {args.aug_per_sample} augmentations")
    pictures = [augmentation_demo(data, args.aug_samples, args.aug_per_sample, config.seed, args.samples_dir,
                                  args.fixed_names)]
    print(f"wrote {shown(pictures[0])}")

    checkpoint, test_accuracy = None, None
    if config.epochs > 0:
        from utils.plotting import confident_mistakes, confusion_matrix, training_curves

        print("== 3. training")
        model, checkpoint, history = train.train(config, data)
        test_accuracy = history[-1]["test_accuracy"]

        print("== 4. pictures of the trained model")
        _, _, probabilities = evaluate(model, data.test_images, data.test_labels)
        predictions = probabilities.argmax(1)
        folder, fixed = args.samples_dir, args.fixed_names
        pictures += [training_curves(history, len(data.train_labels), folder, fixed),
                     confusion_matrix(predictions, data.test_labels, folder, fixed),
                     confident_mistakes(data.test_images, data.test_labels, probabilities, folder, fixed=fixed)]
        for picture in pictures[1:]:
            print(f"wrote {shown(picture)}")

    print("== summary")
    print(f"samples drawn: {args.aug_samples}, augmentations per sample: {args.aug_per_sample}")
    print(f"epochs trained: {config.epochs}")
    if checkpoint:
        passed = test_accuracy >= args.min_accuracy
        print(f"final test accuracy: {test_accuracy:.2f}% "
              f"(minimum {args.min_accuracy:g}%: {'passed' if passed else 'FAILED'})")
        print(f"checkpoint: {shown(checkpoint)}")
    else:
        print("final test accuracy: not trained (the augmentation demo alone: --epochs N trains), no checkpoint")
    print(f"pictures written: {len(pictures)}: {', '.join(shown(p) for p in pictures)}")
    print(f"total time: {time.perf_counter() - started:.1f} s")
    if checkpoint and not passed:
        raise UserError(f"test accuracy {test_accuracy:.2f}% is below the minimum {args.min_accuracy:g}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
