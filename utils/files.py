"""Writing files that never overwrite anything and never leave a half-written file behind."""
import os
import tempfile
import time
from pathlib import Path


def timestamp(when: float | None = None) -> str:
    return time.strftime("%Y%m%d_%H%M%S", time.localtime(when))


def write_new(folder, stem: str, suffix: str, write) -> Path:
    """Call write(path) on a temporary file in `folder`, then give it the first free name among
    stem.suffix, stem_2.suffix, ... os.link fails rather than replace, so two writers racing for the
    same name both succeed, under different names; an interrupted write leaves only the temporary file
    (hidden, removed on the way out)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = write_temporary(folder, suffix, write)
    try:
        for attempt in range(1, 1000):
            target = folder / f"{stem}{'' if attempt == 1 else f'_{attempt}'}{suffix}"
            try:
                os.link(temporary, target)
                return target
            except FileExistsError:
                continue
        raise FileExistsError(f"no free name for {stem}{suffix} in {folder}")
    finally:
        os.unlink(temporary)


def write_temporary(folder: Path, suffix: str, write) -> Path:
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=suffix)
    os.close(handle)
    try:
        write(temporary)
    except BaseException:
        os.unlink(temporary)
        raise
    return Path(temporary)


def replace_atomically(path: Path, write) -> None:
    """Replace a file this program wrote itself with new contents, atomically."""
    os.replace(write_temporary(path.parent, path.suffix, write), path)
