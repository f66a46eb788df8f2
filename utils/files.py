"""Writing files: never over anything that is not ours, never a half-written file left behind (not even by a
run killed mid-write: the next run removes what dead runs left), and every filesystem error one line that
names the path and the reason ("No space left on device" on a full disk)."""
import os
import secrets
import shutil
import socket
import stat
import time
from contextlib import contextmanager
from pathlib import Path

from utils.errors import UserError

PARTIAL = ".partial-"  # temporary files: .partial-<host>-<pid>-<random><suffix>, hidden, never read as results


def timestamp(when: float | None = None) -> str:
    return time.strftime("%Y%m%d_%H%M%S", time.localtime(when))


def is_ours(path: Path) -> bool:
    """False for hidden files: our temporary files, and the editors' and systems' (.DS_Store, ._x.pth)."""
    return not path.name.startswith(".")


@contextmanager
def reporting(action: str, path):
    """Turn an OSError inside the `with` into one line: 'cannot <action> <path>: <reason>'."""
    try:
        yield
    except OSError as error:
        raise UserError(f"cannot {action} {path}: {error.strerror or error}") from None


KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "folder", stat.S_IFIFO: "a FIFO (named pipe)",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def kind_of(path, action: str = "read") -> str:
    """"file", "folder", "missing" (a symlink to nothing too), or what else `path` is ("a FIFO (named pipe)", ...):
    every probe of a path goes through here, so a name too long or a symlink loop is one line too, "cannot
    <action> <path>: <reason>"."""
    with reporting(action, path):
        try:
            return KINDS.get(stat.S_IFMT(os.stat(path).st_mode), "not a file")
        except (FileNotFoundError, NotADirectoryError):  # the latter: a path below a file
            return "missing"


def regular_file(path, missing: str, folder: str) -> Path:
    """`path` if it is a regular file (or a symlink to one); else a UserError: the message `missing` or `folder`
    for those two, and for anything else (a FIFO would block the reader, /dev/zero never end) what it is."""
    kind = kind_of(path)
    if kind == "file":
        return Path(path)
    if kind in ("missing", "folder"):
        raise UserError(missing if kind == "missing" else folder)
    raise UserError(f"{path} is {kind}, not a regular file")


def writable_folder(folder) -> Path:
    """Create `folder` if needed and check that a file can be made in it, before the work whose results go
    there; remove the temporary files that dead runs left in it."""
    folder = Path(folder)
    kind = kind_of(folder, "write in")
    if kind not in ("folder", "missing"):
        raise UserError(f"{folder} is {'a file' if kind == 'file' else kind}, not a folder")
    made(folder)
    remove_leftovers(folder)
    with reporting("write in", folder), temporary_file(folder, ".probe", b""):
        pass
    return folder


def write_new(folder, stem: str, suffix: str, data: bytes) -> Path:
    """Write `data` to the first free name among folder/stem.suffix, stem_2.suffix, ... os.link fails rather
    than replace, so two writers racing for the same name both succeed, under different names."""
    folder = made(Path(folder))
    with reporting("write", folder / f"{stem}{suffix}"), temporary_file(folder, suffix, data) as temporary:
        for attempt in range(1, 1000):
            target = folder / f"{stem}{'' if attempt == 1 else f'_{attempt}'}{suffix}"
            try:
                os.link(temporary, target)
                return target
            except FileExistsError:
                continue
        raise UserError(f"no free name for {stem}{suffix} in {folder}")


def replace_atomically(path: Path, data: bytes) -> None:
    """Replace a file this program wrote itself (or create it) with new contents, atomically."""
    with reporting("write", path), temporary_file(made(path.parent), path.suffix, data) as temporary:
        os.replace(temporary, path)


def made(folder: Path, what: str = "folder") -> Path:
    """`folder`, created with its parents if missing (an error names it as `what`)."""
    with reporting(f"create the {what}", folder):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def temporary_file(folder: Path, suffix: str, data: bytes):
    """A hidden file in `folder` holding `data` (on disk: flushed and synced), removed when the `with` ends,
    however it ends. Its name is chosen before it exists, inside the cleanup's scope: Ctrl-C at any moment
    leaves nothing. It is created like any file the user makes (mode 0666 less the umask)."""
    path = folder / f"{owned_prefix(PARTIAL)}{secrets.token_hex(4)}{suffix}"
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with open(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # the data is on disk before the name points at it
        yield path
    finally:
        path.unlink(missing_ok=True)


def owned_prefix(kind: str) -> str:
    """The start of a temporary name that says which run made it: <kind><host>-<pid>-."""
    return f"{kind}{socket.gethostname()}-{os.getpid()}-"


def remove_leftovers(folder: Path, kind: str = PARTIAL) -> None:
    """Remove the temporary files and folders (named by owned_prefix(kind)) that runs killed mid-write (SIGKILL,
    power loss) left in `folder`: only those this machine's runs made whose process is gone, so never a live
    run's, nor another machine's on a shared folder. (Not on Windows, where probing a process ends it.)"""
    if os.name == "nt":
        return
    prefix = f"{kind}{socket.gethostname()}-"
    for path in folder.glob(f"{kind}*"):
        pid = path.name.removeprefix(prefix).split("-", 1)[0]
        if path.name.startswith(prefix) and pid.isdigit() and not process_alive(int(pid)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists, run by another user; OverflowError: no pid
        return True
    return True
