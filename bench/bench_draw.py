"""How long draw.py takes to read a drawing: the server's own time per POST /predict (from the request's
headers read to its answer ready: reading the PNG, preparing the 28x28 digit, the network's five views),
and the time a client waits, over many requests of canvas-sized pictures.

    python bench/bench_draw.py [CHECKPOINT] [--requests 1000]

The pictures are the first 100 MNIST test digits as the page sends a drawing: a 280 x 280 PNG, dark strokes
on white. One request at a time, as the page sends them.
"""
import argparse
import http.client
import io
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.data import load_mnist  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def canvas_png(digit) -> bytes:
    """A test digit as the page's canvas sends it: 280 x 280, dark on white, PNG."""
    picture = Image.fromarray(255 - digit.numpy()).resize((280, 280), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="models")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    pictures = [canvas_png(digit[0]) for digit in load_mnist(log=lambda message: None).test_images[:100]]
    server = subprocess.Popen([sys.executable, "draw.py", args.checkpoint, "--port", "0"], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        lines = [server.stdout.readline() for _ in range(2)]
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", lines[1]).group(1))
        server_ms, client_ms = [], []
        for number in range(args.requests + 20):  # the first 20 warm up (the first forward passes are slower)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            started = time.perf_counter()
            connection.request("POST", "/predict", pictures[number % len(pictures)])
            answer = json.loads(connection.getresponse().read())
            waited = (time.perf_counter() - started) * 1000
            connection.close()
            if number >= 20:
                server_ms.append(answer["server_ms"])
                client_ms.append(waited)
    finally:
        server.terminate()
        server.wait()
    size = statistics.mean(map(len, pictures))
    print(f"{args.requests} predictions of {len(pictures)} canvas-sized PNGs ({size:,.0f} bytes on average), "
          "one at a time")
    for name, values in (("server time", server_ms), ("client's wait", client_ms)):
        print(f"{name}: median {statistics.median(values):.1f} ms, 99th percentile {percentile(values, 0.99):.1f} "
              f"ms, largest {max(values):.1f} ms")


if __name__ == "__main__":
    main()
