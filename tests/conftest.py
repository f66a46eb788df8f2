import importlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import train
from model import HybridCNN, Machine
from model.checkpoint import load_model
from utils.data import MNIST, load_mnist, raw_dir
from utils.errors import run_cli

REPO = Path(__file__).resolve().parent.parent
os.environ.pop("PYTHONUNBUFFERED", None)  # the programs the tests start buffer their output as a user's would


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, prepared (fetched if missing) in the default data folder."""
    return load_mnist(log=lambda message: None)


@pytest.fixture(scope="session")
def real_raw_dir(mnist):
    return raw_dir()


@pytest.fixture(scope="session")
def small_mnist(mnist):
    """The first 4,000 training and 1,000 test digits: real data for tests that train several times."""
    return MNIST(mnist.train_images[:4000], mnist.train_labels[:4000],
                 mnist.test_images[:1000], mnist.test_labels[:1000])


@pytest.fixture(scope="session")
def tiny_mnist(mnist):
    """1,000 training and 200 test digits: for tests that watch single steps rather than reach an accuracy."""
    return MNIST(mnist.train_images[:1000], mnist.train_labels[:1000], mnist.test_images[:200], mnist.test_labels[:200])


NEEDS = {"cuda": pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
         "mps": pytest.mark.skipif(not Machine.detect().mps,
                                   reason="Apple's MPS backend is not available on this machine")}


def on(mode, device):
    """A pytest.param (placement mode, device): marked `cuda` or `mps` and skipped, with the reason, where that
    device is missing; the CPU cases run everywhere."""
    kind = device.split(":")[0]
    marks = [] if kind == "cpu" else [getattr(pytest.mark, kind), NEEDS[kind]]
    return pytest.param(mode, device, marks=marks, id=f"{mode}-{device}")


def synchronize(device):
    """Wait for everything queued on an accelerator."""
    {"cuda": torch.cuda.synchronize, "mps": lambda: torch.mps.synchronize()}.get(device.split(":")[0], lambda: None)()


def quiet_config(tmp_path, **overrides):
    return train.Config(quiet=True, models_dir=str(tmp_path / "models"), **overrides)


@contextmanager
def training_steps():
    """What every training step inside the `with` hands the network, seen from outside the training code: a
    list of (inputs, weights) per forward pass of a HybridCNN in training mode, with the batch (a CPU copy)
    and all its parameters, flattened, as they were just before that step."""
    steps = []

    def record(module, inputs):
        if isinstance(module, HybridCNN) and module.training:
            steps.append((inputs[0].detach().cpu().clone(),
                          torch.cat([parameter.detach().cpu().flatten() for parameter in module.parameters()])))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        yield steps
    finally:
        handle.remove()


def is_plain(batch) -> bool:
    """Whether a batch holds MNIST's own pixels (at most 256 distinct values, however they are scaled and
    shifted), not images resampled by the augmentation (thousands of values)."""
    return batch.unique().numel() <= 256


def interrupt_in_epoch_2(message):
    """A run's log: Ctrl-C once epoch 2 has trained and been evaluated, before its checkpoint is written."""
    if message.startswith("epoch 2/"):
        raise KeyboardInterrupt


def by_epoch(steps, images_per_epoch):
    """training_steps' records, grouped into epochs of `images_per_epoch` images."""
    epochs, seen = [[]], 0
    for step in steps:
        if seen == images_per_epoch:
            epochs.append([])
            seen = 0
        epochs[-1].append(step)
        seen += len(step[0])
    return epochs


def assert_bad_flags_rejected(main, argv, message, capsys):
    """A bad flag: exit 2 and exactly one line on stderr that says what is wrong."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


def run_script(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def run_in_process(*args) -> subprocess.CompletedProcess:
    """What run_script gives (exit code, stdout, stderr), without starting a Python and importing torch again
    (1.5 s): the script's main() through run_cli, as its `__main__` block runs it, in the repo folder, with the
    warnings a fresh Python prints. For what a run says and does; the process itself (Ctrl-C, the terminal's
    encoding, a hang that needs a timeout) is run_script's."""
    module, argv = (args[1], args[2:]) if args[0] == "-m" else (Path(args[0]).stem, args[1:])
    stdout, stderr, folder = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(REPO)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr), warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults: each warning once, the developers' ones hidden
            warnings.simplefilter("default")
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=hidden)
            try:
                code = run_cli(importlib.import_module(module).main, list(argv))
            except SystemExit as exit:  # argparse's exit 2
                code = exit.code
    finally:
        os.chdir(folder)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def wait_until(condition, what: str, timeout=300) -> None:
    """Poll `condition` until it holds: a test waits for what it needs, never for a guessed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.005)


def loading_torch(pid: int) -> bool:
    """Whether process `pid` has mapped torch's shared library: it is importing torch (or has)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


class StillRunning(BaseException):
    """Raised in a call that time_limit stopped; a BaseException, so that no `except Exception` swallows it."""


@contextmanager
def time_limit(seconds):
    """Stops the code inside the `with`, in this process, if it runs longer than `seconds`: SIGALRM breaks a call
    blocked in the system (opening a FIFO that no one writes) and its handler raises StillRunning."""
    def stop(signal_number, frame):
        raise StillRunning(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fresh_copy(target: Path, raw_dir: Path) -> None:
    """What a clone of this working tree holds (tracked and new files, not ignored ones; outside a git
    checkout, the tree without data, outputs and caches), plus the verified MNIST files, so that the data
    step checks them instead of downloading."""
    in_git = shutil.which("git") and (REPO / ".git").exists()
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True) if in_git else None
    if listed is None or listed.returncode != 0:
        shutil.copytree(REPO, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", "data", "models", "samples", "node_modules", "__pycache__", ".pytest_cache", ".venv"))
    else:
        for name in filter(None, listed.stdout.split("\0")):
            if (REPO / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target / name)
    (target / "models").mkdir(exist_ok=True)
    shutil.copytree(raw_dir, target / "data" / "MNIST" / "raw")


def run_shell(command, cwd, timeout=600):
    """A command line as a user types it, in bash, with this Python's environment first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MNIST_DATA_DIR", None)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


CAN_MOUNT = shutil.which("unshare") is not None and subprocess.run(  # a tmpfs over /tmp, seen by this process only
    ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", tempfile.gettempdir()],
    capture_output=True).returncode == 0
needs_mount = pytest.mark.skipif(not CAN_MOUNT, reason="needs `unshare -rm` (user and mount namespaces) to mount a "
                                                       "small or read-only tmpfs")


@pytest.fixture(scope="session")
def small_disk(tmp_path_factory):
    """run(disk, options, *args): `python *args` (as run_in_process runs it) with a tmpfs mounted at `disk`
    (options: "size=300k", "ro"), an unprivileged user's private mount: a real full or read-only filesystem,
    whoever runs the tests (root writes through permission bits, not through these). Gives the exit code,
    stdout, stderr and `left`, the names of the files left on the disk. One process in its own mount
    namespace (tests/small_disk.py) runs every such command, so torch is imported once for all of them."""
    log = tmp_path_factory.mktemp("small_disk") / "stderr.txt"
    with open(log, "w") as stderr:
        worker = subprocess.Popen(["unshare", "-rm", sys.executable, str(REPO / "tests" / "small_disk.py")],
                                  cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)

    def run(disk, options, *args):
        disk.mkdir(exist_ok=True)
        worker.stdin.write(json.dumps([options, str(disk), list(args)]) + "\n")
        worker.stdin.flush()
        if not select.select([worker.stdout], [], [], 600)[0]:
            worker.kill()
            raise TimeoutError(f"tests/small_disk.py still running {args} after 600 s")
        answer = json.loads(worker.stdout.readline() or '{"error": "tests/small_disk.py ended"}')
        if "error" in answer:
            raise RuntimeError(answer["error"] + "\n" + log.read_text()[-3000:])
        return SimpleNamespace(**answer)

    yield run
    worker.stdin.close()
    worker.wait(timeout=60)


@pytest.fixture(scope="session")
def clone(tmp_path_factory, real_raw_dir):
    """A fresh copy of the repo with MNIST in its data/ folder, for commands run exactly as documented."""
    target = tmp_path_factory.mktemp("clone")
    fresh_copy(target, real_raw_dir)
    return target


@pytest.fixture(scope="session")
def one_epoch_run(clone):
    """The original README's training command exactly as written, `PYTHONPATH=$PYTHONPATH:$(pwd) python
    train.py --epochs 1`, in a fresh copy of the repo, once per test session."""
    result = run_shell("PYTHONPATH=$PYTHONPATH:$(pwd) python train.py --epochs 1", cwd=clone)
    assert result.returncode == 0, result.stderr
    (checkpoint,) = (clone / "models").glob("*.pth")
    return result, checkpoint


@pytest.fixture(scope="session")
def narrow_checkpoint(tmp_path_factory, mnist):
    """A real checkpoint that evaluates in half the time of the design's network, for the checks of what
    evaluate.py prints and decides about a checkpoint's figures: widths 4,8, one epoch on 1,000 digits, its
    accuracy (about 80%) recorded on the whole test set."""
    data = MNIST(mnist.train_images[:1000], mnist.train_labels[:1000], mnist.test_images, mnist.test_labels)
    _, path, _ = train.train(quiet_config(tmp_path_factory.mktemp("narrow"), channels=(4, 8), split=2), data=data,
                             log=lambda message: None)
    return path


@pytest.fixture(scope="session")
def trained_model(one_epoch_run):
    """The network that one_epoch_run saved, rebuilt from its checkpoint, in eval mode."""
    model, _ = load_model(one_epoch_run[1])
    return model
