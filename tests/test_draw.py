"""draw.py: the server over HTTP (quick), and the page in a real browser, headless Chromium driven by Selenium
(slow tier): digits traced with pointer strokes, image files chosen, the canvas cleared."""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from PIL import Image

import draw
import train
from conftest import REPO, quiet_config, run_in_process, wait_until
from model.checkpoint import load_model
from utils.images import load_digit

SCALE = 10  # canvas pixels per MNIST pixel: the page's square is 280 x 280


def start_server(checkpoint, *flags):
    """`python draw.py CHECKPOINT --port 0` (any free port): the process and the URL it prints."""
    process = subprocess.Popen([sys.executable, "draw.py", str(checkpoint), "--port", "0", *flags], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = [process.stdout.readline() for _ in range(2)]
    found = re.search(r"at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)", lines[1])
    assert found, (lines, process.stderr.read() if process.poll() is not None else "")
    return process, found.group(1)


@pytest.fixture(scope="module")
def server(one_epoch_run):
    """One server for the module's tests; stopped as a user stops it, with Ctrl-C: one line, exit 130."""
    process, url = start_server(one_epoch_run[1])
    yield url
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (130, "interrupted: stopped before finishing; no partial files were left\n")


def request(url, data=None, method=None, headers=None):
    """(status, parsed JSON or the page's text) of one HTTP request."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers or {}, method=method), timeout=60) as r:
            body, status, kind = r.read(), r.status, r.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        body, status, kind = error.read(), error.code, error.headers["Content-Type"]
    return status, json.loads(body) if kind == "application/json" else body.decode()


def evaluate_reads(checkpoint, files) -> list[int]:
    """The digit `python evaluate.py CHECKPOINT --image FILE...` prints for each file."""
    result = run_in_process("evaluate.py", str(checkpoint), "--image", *map(str, files))
    assert result.returncode == 0, result.stderr
    return [int(re.search(rf"^{re.escape(str(file))}: (\d) \(", result.stdout, re.MULTILINE).group(1))
            for file in files]


def mnist_png(mnist, index, path, scale=4):
    """Test digit `index` as a picture file: dark ink on white, `scale` times its size."""
    pixels = 255 - mnist.test_images[index, 0].numpy()
    Image.fromarray(pixels).resize((28 * scale, 28 * scale), Image.NEAREST).save(path)
    return path


def test_the_page_is_one_file_that_needs_nothing_from_elsewhere(server):
    status, page = request(server)
    assert status == 200 and '<canvas id="pad"' in page and "fetch(\"/predict\"" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must work offline"
    status, about = request(server + "about")
    assert status == 200 and about["test_accuracy"] > 99 and about["checkpoint"].endswith(".pth")


def test_a_posted_image_is_read_as_evaluate_reads_the_file(server, one_epoch_run, mnist, tmp_path):
    files = [mnist_png(mnist, index, tmp_path / f"digit{index}.png") for index in range(5)]
    expected = evaluate_reads(one_epoch_run[1], files)
    for file, digit in zip(files, expected):
        status, answer = request(server + "predict", file.read_bytes(), "POST")
        assert status == 200 and answer["digit"] == digit
        assert torch.equal(torch.tensor(answer["image"], dtype=torch.uint8)[None], load_digit(file))
        probabilities = torch.tensor(answer["probabilities"])
        assert probabilities.argmax() == digit and abs(probabilities.sum() - 1) < 1e-4
        assert 0 < answer["server_ms"] < 10_000


def test_bad_requests_get_a_4xx_and_one_line_and_the_server_keeps_serving(server, tmp_path):
    Image.new("1", (14_000, 14_000)).save(tmp_path / "bomb.png")  # 24 KB, 196 megapixels once decoded
    bad = {
        "empty": (server + "predict", b"", "POST", 400, "not 0 bytes"),
        "too large": (server + "predict", b"\0" * (5 * 2**20), "POST", 413, "not 5,242,880 bytes"),
        "not an image": (server + "predict", b"hello", "POST", 422, "not an image file"),
        "a decompression bomb": (server + "predict", (tmp_path / "bomb.png").read_bytes(), "POST", 422,
                                 "far more pixels than a digit's picture needs"),
        "a blank picture": (server + "predict", blank_png(tmp_path), "POST", 422, "no digit found"),
        "a wrong path": (server + "nowhere", None, None, 404, "no page /nowhere"),
        "a wrong path to post to": (server + "predict/x", b"x", "POST", 404, "images go to POST /predict"),
        "a wrong method": (server + "predict", b"x", "PUT", 405, "PUT is not served"),
        "a method nobody knows": (server, None, "BREW", 405, "BREW is not served"),
    }
    for name, (url, data, method, status, message) in bad.items():
        answer_status, answer = request(url, data, method)
        assert answer_status == status and list(answer) == ["error"], name
        assert message in answer["error"] and "\n" not in answer["error"], (name, answer)
    address = urllib.parse.urlsplit(server)
    with socket.create_connection((address.hostname, address.port)) as raw:  # a body without a Content-Length
        raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert raw.recv(200).startswith(b"HTTP/1.0 411")
    assert request(server)[0] == 200


def blank_png(tmp_path):
    Image.new("L", (280, 280), 255).save(tmp_path / "blank.png")
    return (tmp_path / "blank.png").read_bytes()


def test_without_a_checkpoint_it_says_how_to_train_one(tmp_path):
    result = run_in_process("draw.py", str(tmp_path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"error: no checkpoint in {tmp_path}: train one first (python train.py --epochs 1), "
                             "or name one\n")


def test_a_port_in_use_and_bad_flags_are_one_line(one_epoch_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_in_process("draw.py", str(one_epoch_run[1]), "--port", str(port))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    result = run_in_process("draw.py", "--port", "70000")
    assert result.returncode == 2 and "--port: must be from 0 to 65535, not 70000" in result.stderr
    result = run_in_process("draw.py", "--timeout", "0")
    assert result.returncode == 2 and "--timeout: must be above 0 and at most 3600, not 0" in result.stderr


# The page in a real browser. Debian's chromium and chromium-driver (`.ci/run` installs them), or on GitHub's
# runners the Google Chrome and driver they come with; nothing downloads a browser of its own.
def browser_paths():
    if os.environ.get("CHROMEWEBDRIVER"):  # GitHub's runners
        return shutil.which("google-chrome"), str(Path(os.environ["CHROMEWEBDRIVER"]) / "chromedriver")
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    binary, driver = browser_paths()
    if not (binary and driver and os.path.exists(driver)):
        message = "needs Chromium and its driver: apt-get install -y chromium chromium-driver"
        if os.environ.get("MNIST_REQUIRE_BROWSER"):  # .ci/run: a browser test must run there, not skip
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=820,820"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield chrome
    chrome.quit()


def open_page(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server)
    wait_for(lambda: browser.find_element(By.ID, "about").text.startswith("Model: "))
    return lambda element: browser.find_element(By.ID, element)


def wait_for(condition):
    wait_until(condition, "the page to get there")


def shown_is_drawn(browser):
    """Whether the prediction on the page is of the picture as it is now (the page numbers its changes)."""
    return browser.execute_script("const d = document.getElementById('pad').dataset; "
                                  "return d.drawn !== undefined && d.drawn === d.shown;")


def trace(browser, pad, pixels):
    """A person tracing a 28x28 digit on the page's square: a short stroke of the pointer over each inked
    pixel, at the canvas's scale, as pointer events (down, move, up)."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(browser, duration=0)
    for row, column in (pixels >= 128).nonzero().tolist():
        x, y = (column + 0.5) * SCALE - 140, (row + 0.5) * SCALE - 140  # from the square's centre
        actions.move_to_element_with_offset(pad, int(x) - 2, int(y)).click_and_hold().move_by_offset(4, 0).release()
    actions.perform()


@pytest.mark.slow
def test_digits_traced_with_a_pointer_are_read_as_evaluate_reads_the_canvas(browser, server, one_epoch_run, mnist,
                                                                            tmp_path):
    """The first 20 test digits, traced: the page shows what `evaluate.py --image` reads from the canvas saved
    as a file, and the true digit for most of them."""
    element = open_page(browser, server)
    pad, shown, saved = element("pad"), [], []
    for index in range(20):
        element("clear").click()
        trace(browser, pad, mnist.test_images[index, 0])
        wait_for(lambda: shown_is_drawn(browser))
        shown.append(int(element("digit").text))
        png = browser.execute_script("return document.getElementById('pad').toDataURL('image/png');")
        saved.append(tmp_path / f"canvas{index}.png")
        saved[-1].write_bytes(base64.b64decode(png.split(",", 1)[1]))
        if index == 0:  # the README's picture: DRAW_SCREENSHOT=docs/images/draw.png python -m pytest -m slow -k traced
            browser.save_screenshot(os.environ.get("DRAW_SCREENSHOT", str(tmp_path / "draw.png")))
    assert shown == evaluate_reads(one_epoch_run[1], saved)
    labels = mnist.test_labels[:20].tolist()
    right = sum(digit == label for digit, label in zip(shown, labels))
    misread = [f"test digit {index}, a {label}, as {digit}" for index, (digit, label) in enumerate(zip(shown, labels))
               if digit != label]
    print(f"the page read {right} of the 20 traced test digits right; misread: {'; '.join(misread) or 'none'}")
    assert right >= 15, misread


@pytest.mark.slow
def test_image_files_chosen_on_the_page_are_read_as_evaluate_reads_them(browser, server, one_epoch_run, mnist,
                                                                        tmp_path):
    element = open_page(browser, server)
    files = [mnist_png(mnist, index, tmp_path / f"upload{index}.png") for index in range(20, 25)]
    for file, digit in zip(files, evaluate_reads(one_epoch_run[1], files)):
        element("file").send_keys(str(file))
        wait_for(lambda: shown_is_drawn(browser) and element("status").text.startswith(file.name))
        assert int(element("digit").text) == digit
    (tmp_path / "not_an_image.png").write_bytes(b"hello")
    element("file").send_keys(str(tmp_path / "not_an_image.png"))
    wait_for(lambda: shown_is_drawn(browser) and "not_an_image.png" in element("status").text)
    assert element("digit").text == "?" and "not an image file" in element("status").text


@pytest.mark.slow
def test_clear_empties_the_square_and_the_prediction(browser, server, mnist):
    element = open_page(browser, server)
    trace(browser, element("pad"), mnist.test_images[30, 0])
    wait_for(lambda: shown_is_drawn(browser) and element("digit").text != "?")
    element("clear").click()
    white = browser.execute_script(
        "const pad = document.getElementById('pad');"
        "return pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data.every(value => value === 255);")
    assert white and element("digit").text == "?"
    assert [value.text for value in browser.find_elements("css selector", "#bars .value")] == ["\u2013"] * 10


def test_a_checkpoint_of_other_widths_draws(tmp_path, tiny_mnist, mnist):
    """The page's server rebuilds whatever network the checkpoint records, as evaluate.py does."""
    _, path, _ = train.train(quiet_config(tmp_path, channels=(6, 12, 12, 12)), data=tiny_mnist,
                             log=lambda message: None)
    reader = draw.Reader(*load_model(path), path)  # what draw.py serves, without a server of its own
    file = mnist_png(mnist, 3, tmp_path / "digit.png")
    assert reader.predict(file.read_bytes())["digit"] == evaluate_reads(path, [file])[0]
    assert reader.about["parameters"] == torch.load(path, weights_only=True)["parameters"]
