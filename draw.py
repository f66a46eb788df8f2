"""Draw a digit in the browser and watch the trained model read it.

    python draw.py                          # the newest checkpoint in models/, at http://127.0.0.1:8000/
    python draw.py mnist-model-12.zip --port 8080

The page (draw.html: one file of HTML, CSS and JavaScript, nothing fetched from elsewhere) sends what you draw,
or an image file you drop on it, as the file's bytes to POST /predict (a multipart form with one file, as
`curl -F file=@digit.png` sends it, is read too). The server prepares it exactly as
`evaluate.py --image` does (utils/images.py) and answers JSON: the digit, the ten probabilities and the 28x28
image the model saw. The standard library's http.server serves it; Ctrl-C stops it.
"""
import contextlib
import json
import re
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

# utils first: importing it arms the Ctrl-C guard before torch loads (utils/__init__.py)
from utils import flags
from utils.errors import OneLineErrors, UserError, run_cli, shown

import torch

import evaluate
from model.checkpoint import load_model
from model.placement import describe
from utils.checkpoint import checkpoint_file
from utils.files import is_ours, kind_of, reporting
from utils.images import load_digit

PAGE = Path(__file__).resolve().with_name("draw.html")
MAX_UPLOAD = 4 * 2**20  # bytes: a photo of a digit fits; the canvas sends about 10 KB


class Reader:
    """The model, loaded once, what the page says about it, and predictions, one at a time, always on the same
    thread: the server starts a thread per request, and torch's first parallel work on a new thread sets up its
    own pool of workers (docs/performance.md, "draw.py")."""

    def __init__(self, model, state, name):
        self.model, self.worker = model, ThreadPoolExecutor(max_workers=1)
        self.about = {"checkpoint": shown(Path(str(name)).name), "test_accuracy": state["final_test_accuracy"],
                      "epochs": state["epochs"], "parameters": state["parameters"],
                      "runs_on": describe(model)}

    def predict(self, data: bytes) -> dict:
        return self.worker.submit(self.read, data).result()

    def read(self, data: bytes) -> dict:
        digit = load_digit("the image", data=data)
        probabilities = evaluate.probabilities_of(self.model, digit, "the image")
        return {"digit": int(probabilities.argmax()), "probabilities": [round(p, 6) for p in probabilities.tolist()],
                "image": digit[0].tolist()}


ROUTES = {"/": "GET, HEAD", "/about": "GET, HEAD", "/predict": "POST"}  # each path: the methods it takes


def uploaded(content_type: str, body: bytes) -> bytes:
    """The image in a request's body: the body itself (the page, `curl --data-binary @digit.png`), or the one
    file of a multipart/form-data form (`curl -F file=@digit.png`, an HTML form)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    form = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    files = [part for part in form.iter_parts() if part.get_filename() is not None] if form.is_multipart() else []
    if len(files) != 1:
        raise UserError(f"a multipart form with one file in it, not {len(files)}")
    return files[0].get_payload(decode=True) or b""


class Server(ThreadingHTTPServer):
    """One thread per request; a client that leaves early is no error of the server's."""
    request_queue_size = 256  # connections waiting to be accepted: with 5, 13 of 200 simultaneous POSTs timed out

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):  # one line, not socketserver's traceback
            print(f"error answering {client_address[0]}: {type(error).__name__}: {shown(error, 200)}",
                  file=sys.stderr)


class Handler(BaseHTTPRequestHandler):
    """GET / (the page), GET /about (the checkpoint), POST /predict (image bytes); anything else, and every bad
    request, a 4xx status with a one-line JSON error."""
    server_version, timeout = "draw.py", 10  # seconds a client may take to send its request (--timeout)
    reader: Reader
    page: bytes

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/":
            self.answer(HTTPStatus.OK, self.page, "text/html; charset=utf-8")
        elif path == "/about":
            self.answer_json(HTTPStatus.OK, self.reader.about)
        else:
            self.not_here(path)

    def not_here(self, path):
        """404 for a path this server does not have, 405 (with the methods it takes) for one it has."""
        if path not in ROUTES:
            return self.send_error(HTTPStatus.NOT_FOUND, f"no page {shown(self.path, 100)}: the page is /, images "
                                                         "go to POST /predict")
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, f"{shown(self.command, 20)} is not served at {path}: "
                                                       f"{ROUTES[path]}")

    def do_POST(self):
        started = time.perf_counter()
        path = urlsplit(self.path).path
        if path != "/predict":
            return self.not_here(path)
        lengths = self.headers.get_all("Content-Length", [])
        if not lengths:
            return self.send_error(HTTPStatus.LENGTH_REQUIRED, "send the image's bytes with a Content-Length")
        if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,12}", lengths[0]):  # int() would take "+2_84" too
            return self.refuse_body(HTTPStatus.BAD_REQUEST, f"one Content-Length of digits, not "
                                                            f"{shown(', '.join(lengths), 60)}")
        length = int(lengths[0])
        if not 0 < length <= MAX_UPLOAD:
            status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if length > 0 else HTTPStatus.BAD_REQUEST
            return self.refuse_body(status, f"an image of 1 byte to {MAX_UPLOAD // 2**20} MB, not {length:,} bytes")
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            return self.send_error(HTTPStatus.REQUEST_TIMEOUT, f"the image's bytes stopped coming before "
                                                               f"{length:,} (its Content-Length) arrived")
        if len(data) < length:
            return self.send_error(HTTPStatus.BAD_REQUEST, f"the body ended after {len(data):,} of its "
                                                           f"Content-Length's {length:,} bytes")
        try:
            prediction = self.reader.predict(uploaded(self.headers.get("Content-Type", ""), data))
        except UserError as error:
            return self.send_error(HTTPStatus.UNPROCESSABLE_ENTITY, str(error))
        self.answer_json(HTTPStatus.OK, prediction | {"server_ms": (time.perf_counter() - started) * 1000})

    def refuse_body(self, status, message):
        """Answer before reading a body that will not be read, then take in what the client still sends (for at
        most a few seconds): closing on unread bytes resets the connection, and the client never sees the answer."""
        self.send_error(status, message)
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)
        self.connection.settimeout(2)
        with contextlib.suppress(OSError):
            for _ in range(16 * MAX_UPLOAD // 2**16):
                if not self.connection.recv(2**16):
                    break

    def send_error(self, code, message=None, explain=None):
        """Every error as one line of JSON; a method this server does not serve is 405, not http.server's 501."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"{shown(self.command, 20)} is not served: GET or POST"
        self.close_connection = True  # an unread body must not be taken for the next request
        self.answer_json(code, {"error": message or HTTPStatus(code).phrase})

    def answer_json(self, code, value):
        self.answer(code, json.dumps(value, allow_nan=False).encode(), "application/json")

    def answer(self, code, body: bytes, kind: str):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if code == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ROUTES.get(urlsplit(self.path).path, "GET, HEAD, POST"))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def log_message(self, format, *args):  # a line per stroke would bury the URL: quiet
        pass


def main(argv=None):
    parser = OneLineErrors(description="Serve a page where the trained model reads the digits you draw.")
    parser.add_argument("checkpoint", metavar="PATH", nargs="?", default="models",
                        help="a .pth checkpoint, a folder (its newest) or a CI artifact .zip (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s, this "
                                                            "machine only)")
    parser.add_argument("--port", type=flags.in_range(int, 0, 65535), default=8000,
                        help="(default: %(default)s; 0: any free one)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: detect)")
    parser.add_argument("--timeout", type=flags.in_range(float, 0, 3600, above=True), default=Handler.timeout,
                        help="seconds a client may take to send its request before a 408 (default: %(default)s)")
    args = parser.parse_args(argv)
    path, kind = Path(args.checkpoint), kind_of(args.checkpoint)
    if kind == "missing" or kind == "folder" and not any(filter(is_ours, path.glob("*.pth"))):
        raise UserError(f"no checkpoint in {path}: train one first (python train.py --epochs 1), or name one")
    with checkpoint_file(path) as (file, name):
        model, state = load_model(file, device=args.device, name=name)
    torch.set_num_threads(1)  # one drawing at a time: a second thread only waits on the first and on the server
    with reporting("read", PAGE):  # once, at the start: a page missing is said here, not at every request
        Handler.page = PAGE.read_bytes()
    Handler.reader, Handler.timeout = Reader(model, state, name), args.timeout
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as error:
        raise UserError(f"cannot listen on {shown(args.host, 100)}:{args.port}: {error.strerror or error}"
                        f"{' (another --port?)' if 'in use' in str(error) else ''}") from None
    host, port = server.server_address[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"checkpoint: {shown(name)} ({state['final_test_accuracy']:.2f}% test accuracy), on "
          f"{describe(model)}")
    print(f"draw a digit at http://{shown_host}:{port}/ (Ctrl-C stops)")
    with server:
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(run_cli(main))
