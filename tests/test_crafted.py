"""Files and requests crafted to break the readers (a fourth audit): checkpoints of shared references, cycles,
deep nesting, tensors that are views of other memory and weights that overflow; a FIFO as the summary file; a
learning rate that overflows and a warm-up the schedule cannot make; images whose decoders raise their own
errors; HTTP clients that lie about their bodies or leave. Each ends in one line (or the right answer), quickly."""
import io
import os
import re
import socket
import struct
import subprocess
import threading
import urllib.parse
import zipfile

import pytest
import torch
from PIL import Image

import draw
import evaluate
import train
from utils.errors import run_cli

from bench.fuzz import deep, with_opcodes
from conftest import REPO, time_limit

FIXTURES = REPO / "tests" / "fixtures"


def nested(depth=6, width=32):
    """A list holding itself `width` times at each of `depth` levels: 200 bytes pickled, 32**6 paths."""
    shared = [0]
    for _ in range(depth):
        shared = [shared] * width
    return shared


def cycle():
    loop = []
    loop.append(loop)
    return loop


def optimizer_with(checkpoint, **entries):
    return checkpoint | {"optimizer_state_dict": checkpoint["optimizer_state_dict"] | entries}


def weights_with(state, name, tensor):
    return state | {"model_state_dict": state["model_state_dict"] | {name: tensor}}


CRAFTED = {  # name: (what torch.save writes from a real checkpoint's state, the reason every reader gives)
    "shared references in the optimizer state": (
        lambda state: optimizer_with(state, extra=nested()), "optimizer_state_dict holds an unknown entry 'extra'"),
    "shared references as the history": (
        lambda state: state | {"history": nested()}, "history[0] is a list of 32, not a dict"),
    "shared references in an epoch's curve": (
        lambda state: state | {"history": [state["history"][0] | {"curve": nested()}]},
        "history[0]['curve'][0] is a list of 32, not a list of 3 to 4"),
    "a cycle as the optimizer state": (
        lambda state: optimizer_with(state, state=cycle()), "optimizer_state_dict['state'] is a list of 1, not a dict"),
    "a cycle as the history": (lambda state: state | {"history": cycle()}, "history[0] is a list of 1, not a dict"),
    "an expanded tensor of 3 * 2**30 values": (
        lambda state: optimizer_with(state, extra=torch.zeros(1).expand(3 * 2**30)),
        "optimizer_state_dict holds an unknown entry 'extra'"),
    "expanded weights": (
        lambda state: weights_with(state, "0.conv.weight", torch.zeros(1).expand(10, 1, 5, 5)),
        "model_state_dict['0.conv.weight'] is not a block of memory of its own (an expanded or strided view)"),
    "expanded weights of 10 * 2**30 values in a layer of that shape": (
        lambda state: weights_with(state | {"layers": state["layers"] | {"3.2.weight": [10, 2**30]}}, "3.2.weight",
                                   torch.zeros(1).expand(10, 2**30)),
        "model_state_dict['3.2.weight'] is not a block of memory of its own (an expanded or strided view)"),
    "a strided momentum buffer": (
        lambda state: optimizer_with(state, state=state["optimizer_state_dict"]["state"] | {
            3: {"momentum_buffer": torch.zeros(20, 10, 3, 3, 2)[..., 0]}}),
        "optimizer_state_dict['state'][3]['momentum_buffer'] is not a block of memory of its own"),
    "one momentum buffer for two layers": (
        lambda state: optimizer_with(state, state=state["optimizer_state_dict"]["state"] | {
            2: state["optimizer_state_dict"]["state"][1]}),
        "optimizer_state_dict['state'][2] is a dict of 1 met before (a shared reference), not a value of its own"),
    "one tensor as two momentum buffers": (
        lambda state: optimizer_with(state, state=state["optimizer_state_dict"]["state"] | {
            2: {"momentum_buffer": state["optimizer_state_dict"]["state"][1]["momentum_buffer"]}}),
        "optimizer_state_dict['state'][2]['momentum_buffer'] overlaps another tensor's memory"),
    "finite weights that overflow": (
        lambda state: weights_with(state, "3.2.weight", torch.full((10, 1008), 3e38)),
        "its weights make the output for a plain digit NaN or infinite"),
    "widths evaluation cannot hold": (
        lambda state: state | {"build_model": {"channels": [1024, 1024], "dropout": 0.15}},
        "build_model['channels'][0] is 1024, not from 1 to 256"),
}


def assert_every_reader_says(path, reason, tmp_path, capsys):
    """evaluate.py (a digit), draw.py (before it serves) and --resume: exit 1, the same one line, soon."""
    Image.open(FIXTURES / "digit_1.png").save(tmp_path / "one.png")
    with time_limit(60):
        assert run_cli(evaluate.main, [str(path), "--image", str(tmp_path / "one.png")]) == 1
        error = capsys.readouterr().err
        assert re.fullmatch(rf"error: {re.escape(str(path))}: damaged checkpoint: {re.escape(reason)}.*\n", error), \
            error
        assert len(error) < 400
        assert run_cli(draw.main, [str(path), "--port", "0"]) == 1
        assert capsys.readouterr().err == error
        assert run_cli(train.main, ["--resume", str(path), "--epochs", "2", "--quiet",
                                    "--models-dir", str(tmp_path / "models")]) == 1
        assert capsys.readouterr().err == error
    assert not list((tmp_path / "models").glob("*"))


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_checkpoints_are_one_line_for_every_reader(name, one_epoch_run, tmp_path, capsys):
    """Before: the shared references hung every reader (10**9 paths), the expanded tensor took 20 GB, a cycle was
    a RecursionError, the overflowing weights read every digit as `0 (nan%)`, widths 1024 evaluated for minutes."""
    craft, reason = CRAFTED[name]
    path = tmp_path / "crafted.pth"
    torch.save(craft(torch.load(one_epoch_run[1], weights_only=True)), path)
    assert_every_reader_says(path, reason, tmp_path, capsys)


@pytest.mark.parametrize("key, reason", [("history", "history[0] is a list of 1, not a dict"),
                                         ("hyperparameters", "hyperparameters is a list of 1, not a dict")])
def test_nesting_200_000_deep_is_one_line_for_every_reader(key, reason, one_epoch_run, tmp_path, capsys):
    path = tmp_path / "deep.pth"
    path.write_bytes(with_opcodes(torch.load(one_epoch_run[1], weights_only=True), key, deep(200_000)))
    assert_every_reader_says(path, reason, tmp_path, capsys)


def test_a_zip_that_claims_to_span_disks_is_one_line(tmp_path, capsys):
    """Found by the fuzz net's 20,000 cases: zipfile.is_zipfile raised BadZipFile on it, a traceback."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.pth", b"weights")
    data = buffer.getvalue()
    end = data.rindex(b"PK\x05\x06")  # the end of the central directory; a zip64 locator before it names disk 2 of 2
    (tmp_path / "spanning.zip").write_bytes(data[:end] + b"PK\x06\x07" + struct.pack("<LQL", 1, 0, 2) + data[end:])
    assert run_cli(evaluate.main, [str(tmp_path / "spanning.zip")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'spanning.zip'}: a damaged zip archive (zipfiles that " \
                                      "span multiple disks are not supported)\n"


def test_a_summary_that_is_a_fifo_is_one_line(narrow_checkpoint, tmp_path, capsys):
    """Before, the verdict printed and then the program waited forever to open the FIFO."""
    os.mkfifo(tmp_path / "fifo")
    with time_limit(60):
        code = run_cli(evaluate.main, [str(narrow_checkpoint), "--min-accuracy", "50", "--summary",
                                       str(tmp_path / "fifo")])
    assert code == 1
    assert capsys.readouterr().err == f"error: --summary {tmp_path / 'fifo'} is a FIFO (named pipe), not a file " \
                                      "to append to\n"


def test_a_warm_up_of_exactly_one_step_is_one_line(one_epoch_run, tmp_path, capsys, mnist):
    """Batch 8192 makes 8 steps an epoch: 2 epochs with a warm-up of 1/16 warm up for one step, which OneCycleLR
    divides by (less one). Before: a ZeroDivisionError traceback on --resume of such a recorded recipe."""
    state = torch.load(one_epoch_run[1], weights_only=True)
    state |= {"planned_epochs": 2, "schedule_state": state["schedule_state"] | {"last_epoch": 8, "total_steps": 16},
              "hyperparameters": state["hyperparameters"] | {"batch_size": 8192, "warmup": 0.0625}}
    torch.save(state, tmp_path / "one_step.pth")
    assert run_cli(train.main, ["--resume", str(tmp_path / "one_step.pth"), "--epochs", "2", "--quiet",
                                "--models-dir", str(tmp_path / "models")]) == 1
    assert capsys.readouterr().err == ("error: a warm-up of exactly one step (0.0625 of 16 steps) is one the one-cycle "
                                       "schedule cannot make: another --batch-size or --epochs changes its length\n")
    assert not list((tmp_path / "models").glob("*"))


def damaged_blp(path):
    buffer = io.BytesIO()
    Image.new("P", (28, 28)).save(buffer, "BLP")
    data = bytearray(buffer.getvalue())
    data[4:8] = (99).to_bytes(4, "little")  # a compression Pillow does not know: BLPFormatError
    path.write_bytes(data)


def test_every_decoder_s_error_is_one_line_and_the_other_files_are_read(trained_model, one_epoch_run, tmp_path, capsys):
    """Before, a damaged AVIF (RuntimeError) or BLP (BLPFormatError) was a traceback, and the files after it were
    never read; posted to draw.py, the connection closed with no answer."""
    damaged_blp(tmp_path / "bad.blp")
    files = [str(FIXTURES / "damaged.avif"), str(tmp_path / "bad.blp"), str(FIXTURES / "digit_1.png")]
    assert run_cli(evaluate.main, [str(one_epoch_run[1]), "--image", *files]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: {files[0]}: damaged AVIF image (Failed to decode frame 0: "
                                         "Decoding of color planes failed)",
                                         f"error: {files[1]}: damaged BLP image (Unknown BLP compression 99)"]
    assert captured.out.splitlines()[-1].startswith(f"{files[2]}: ")


@pytest.fixture
def served(one_epoch_run, request):
    """draw.py serving on a free port, with the test's flags (indirect parametrization): (the process, its
    address)."""
    from test_draw import start_server

    process, url = start_server(one_epoch_run[1], *getattr(request, "param", ()))
    yield process, urllib.parse.urlsplit(url)
    process.terminate()
    process.wait(timeout=60)


def exchange(address, data: bytes, close=False) -> bytes:
    """Send raw bytes to the server; its answer's status line (or nothing, for a client that leaves)."""
    with socket.create_connection((address.hostname, address.port), timeout=60) as connection:
        connection.sendall(data)
        if close:
            return b""
        return connection.makefile("rb").readline()


@pytest.mark.parametrize("served", [("--timeout", "1")], indirect=True)  # the stalled body's answer: after 1 s
def test_draw_answers_bad_content_lengths_with_4xx_and_a_stalled_body_with_408(served):
    """Before: `+284` and `2_84` were taken as lengths, the first of two headers won, and a length over 4 MB with
    no body, or a body shorter than its length, closed the connection after 10 s with no answer; so did an image
    whose decoder raised its own error type."""
    _, address = served
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\n"
    stalled = socket.create_connection((address.hostname, address.port), timeout=60)
    stalled.sendall(head + b"Content-Length: 500\r\n\r\nabc")  # 3 of 500 bytes, then nothing: answered at the timeout
    for lengths, status in [([b"+284"], b"400"), ([b"2_84"], b"400"), ([b"3", b"3"], b"400"), ([b"3 4"], b"400"),
                            ([b"99999999"], b"413"), ([b"0"], b"400")]:
        headers = b"".join(b"Content-Length: " + length + b"\r\n" for length in lengths)
        assert exchange(address, head + headers + b"\r\nabc").startswith(b"HTTP/1.0 " + status), lengths
    avif = (FIXTURES / "damaged.avif").read_bytes()  # its decoder's RuntimeError closed the connection unanswered
    assert exchange(address, head + b"Content-Length: %d\r\n\r\n" % len(avif) + avif).startswith(b"HTTP/1.0 422")
    with stalled:
        assert stalled.makefile("rb").readline().startswith(b"HTTP/1.0 408")


def test_draw_takes_200_posts_at_once_and_is_quiet_about_clients_that_leave(served):
    """Before: a listen backlog of 5 timed out 13 of 200 simultaneous POSTs, and every client that left early put a
    BrokenPipe or ConnectionReset traceback on stderr."""
    process, address = served
    image = (FIXTURES / "digit_1.png").read_bytes()
    post = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(image) + image
    for _ in range(50):  # clients that leave: mid-request, after a partial body, before the answer
        exchange(address, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabc", close=True)
        exchange(address, post, close=True)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(exchange(address, post))) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [b"HTTP/1.0 200 OK\r\n"] * 200
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{address.port}"], capture_output=True, text=True)
    assert int(listening.stdout.split()[2]) >= 128  # a listening socket's Send-Q: its backlog
    process.terminate()
    assert process.wait(timeout=60) != 0
    assert process.stderr.read() == ""
