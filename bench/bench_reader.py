"""How long the checkpoint reader takes, and how much memory, on the worst files it can be handed: each file is
under the unpack limit, crafted to cost the most per byte (a million empty sets, nesting as deep as the record
allows, 32**6 shared paths, a cycle, a view of 2**40 values, 64 MB of weights), beside the largest checkpoint a
run writes (200 epochs). Each case reads in a fresh process, as evaluate.py does (the network rebuilt and its
weights loaded): its seconds and the peak memory it added to the process.

    python bench/bench_reader.py        # the bar: every case under 5 s and 500 MB
"""
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from utils.errors import UserError  # noqa: E402
import torch  # noqa: E402

import train  # noqa: E402
from bench.fuzz import deep, with_opcodes  # noqa: E402
from utils.checkpoint import MAX_PICKLE  # noqa: E402
from utils.data import MNIST, load_mnist  # noqa: E402
from utils.flags import MAX_EPOCHS  # noqa: E402

BAR_SECONDS, BAR_MB = 5, 500


def saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def cases(state: dict) -> dict:
    """name -> the file's bytes."""
    room = MAX_PICKLE - 20_000  # what the rest of the record takes, about
    epoch = state["history"][0]
    longest = [epoch | {"epoch": number, "first_steps": dict(epoch["first_steps"]),
                        "curve": [(point[0] + number, *point[1:]) for point in epoch["curve"][:25] * 2]}
               for number in range(1, MAX_EPOCHS + 1)]  # 50 points an epoch: the most a run records
    shared = [0]
    for _ in range(6):
        shared = [shared] * 32
    loop = []
    loop.append(loop)
    wide = {"3.2.weight": [10, 800_000]}  # a classifier of 32 MB (and its momentum): not what build_model makes
    return {
        "a real checkpoint (1 epoch)": saved(state),
        f"the longest history ({MAX_EPOCHS} epochs)": saved(state | {"epochs": MAX_EPOCHS,
                                                                     "planned_epochs": MAX_EPOCHS,
                                                                     "history": longest}),
        "1 MB of empty sets": with_opcodes(state, "history", b"](" + b"\x8f" * room + b"e"),  # a list, MARK, sets, APPENDS
        "1 MB of empty lists": with_opcodes(state, "history", b"](" + b"]" * room + b"e"),
        "nesting 490,000 deep": with_opcodes(state, "history", deep(room // 2)),
        "32**6 shared paths": saved(state | {"history": shared}),
        "a cycle": saved(state | {"history": loop}),
        "a view of 10 * 2**30 values": saved(state | {
            "layers": state["layers"] | {"3.2.weight": [10, 2**30]},
            "model_state_dict": state["model_state_dict"] | {"3.2.weight": torch.zeros(1).expand(10, 2**30)}}),
        "64 MB of weights and momentum": saved(state | {
            "layers": state["layers"] | wide,
            "model_state_dict": state["model_state_dict"] | {"3.2.weight": torch.zeros(10, 800_000)},
            "optimizer_state_dict": state["optimizer_state_dict"] | {"state": state["optimizer_state_dict"]["state"] | {
                9: {"momentum_buffer": torch.zeros(10, 800_000)}}}}),
        "weights of 3e38": saved(state | {"model_state_dict": state["model_state_dict"] | {
            "3.2.weight": torch.full((10, 1008), 3e38)}}),
    }


def peak_kb() -> int:
    """The process's peak resident memory since the last reset (Linux: VmHWM)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def read_one(path: str) -> None:
    """In a fresh process: read the checkpoint as evaluate.py does; print the outcome, seconds, MB added."""
    from model.checkpoint import load_model

    Path("/proc/self/clear_refs").write_text("5")  # the peak resident memory starts again from what is used now
    before = peak_kb()
    started = time.perf_counter()
    try:
        load_model(path)
        outcome = "accepted"
    except UserError as error:
        outcome = f"refused: {str(error).split(': ', 1)[1][:90]}"
    seconds = time.perf_counter() - started
    added = (peak_kb() - before) / 1024
    print(f"{seconds:.2f}\t{added:.0f}\t{outcome}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--read":
        return read_one(sys.argv[2])
    data = load_mnist(log=lambda message: None)
    tiny = MNIST(data.train_images[:2000], data.train_labels[:2000], data.test_images[:100], data.test_labels[:100])
    worst = 0
    with tempfile.TemporaryDirectory() as folder:
        _, path, _ = train.train(train.Config(quiet=True, models_dir=folder), data=tiny, log=lambda message: None)
        state = torch.load(path, weights_only=True)
        print(f"{'case':<36} {'bytes':>11} {'seconds':>8} {'MB added':>9}  outcome")
        for name, content in cases(state).items():
            file = Path(folder) / "case.pth"
            file.write_bytes(content)
            result = subprocess.run([sys.executable, __file__, "--read", str(file)], capture_output=True, text=True,
                                    timeout=600)
            if result.returncode:
                print(f"{name:<36} FAILED:\n{result.stderr[-2000:]}")
                worst = float("inf")
                continue
            seconds, added, outcome = result.stdout.strip().split("\t")
            worst = max(worst, float(seconds) / BAR_SECONDS, float(added) / BAR_MB)
            print(f"{name:<36} {len(content):>11,} {float(seconds):>8.2f} {float(added):>9.0f}  {outcome}")
    print(f"bar: under {BAR_SECONDS} s and {BAR_MB} MB each: {'met' if worst < 1 else 'NOT met'}")
    return 0 if worst < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
