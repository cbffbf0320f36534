"""The pid file of a running ferryman and the status file next to it, which says how its last
configuration reload went.

`ferryman run` writes both at start and removes both at exit; `ferryman reload -c FILE` finds the
process through the pid file, signals it, and waits for the status file's generation to move on. The
status file is JSON, replaced atomically (written aside, then renamed)::

    {"pid": 4242, "generation": 3, "outcome": "reloaded", "config": "/etc/ferryman.toml",
     "reasons": [], "changes": ["route /b added"], "time": 1764264000.0}

``outcome`` is "started", "reloaded" (``changes`` lists listeners, members and routes added or removed)
or "refused" (``reasons`` says why, one line each).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def default_pid_dir() -> Path:
    """``$XDG_RUNTIME_DIR/ferryman`` (a per-user directory that needs no root), else
    ``<temp dir>/ferryman-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "ferryman"
    return Path(tempfile.gettempdir()) / f"ferryman-{os.getuid()}"


def default_pid_path(config_path: str | Path) -> Path:
    """Where the pid file goes when ``pid_file`` is not set: named after the configuration's absolute
    path (so two configurations never share one), in `default_pid_dir`."""
    real = os.path.realpath(config_path)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    stem = Path(real).stem or "ferryman"
    return default_pid_dir() / f"{stem}-{digest}.pid"


def _private_dir(path: Path) -> None:
    """Make the default directory, and refuse one that another user made or can write: whoever writes
    the pid file chooses which process `ferryman reload` signals."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(errno.EPERM, "not a directory of this user that only it can write; remove it, or "
                                           "set pid_file", str(path))


def pid_path(pid_file: str | None, config_path: str | Path) -> Path:
    """The pid file of the configuration at `config_path`, whose ``pid_file`` setting is `pid_file`."""
    if pid_file is None:
        return default_pid_path(config_path)
    path = Path(pid_file).expanduser()
    if not path.is_absolute():
        path = Path(os.path.realpath(config_path)).parent / path
    return Path(os.path.normpath(path))


def status_path(pid: Path) -> Path:
    """The status file beside the pid file `pid`."""
    return pid.with_name(pid.name + ".status")


def _replace(path: Path, text: str) -> None:
    if path.parent == default_pid_dir():
        _private_dir(path.parent)
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_pid(path: Path, pid: int) -> None:
    _replace(path, f"{pid}\n")


def read_pid(path: Path) -> int | None:
    """The pid in the file, or None when there is no file or it holds no pid."""
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def remove_if_mine(path: Path, pid: int) -> None:
    """Remove the pid file and its status file, unless another process has written its own since."""
    if read_pid(path) == pid:
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            status_path(path).unlink()


def is_running(pid: int) -> bool:
    """A process with this id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_status(pid_file: Path, status: dict[str, Any]) -> None:
    _replace(status_path(pid_file), json.dumps(status) + "\n")


def read_status(pid_file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(status_path(pid_file).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
