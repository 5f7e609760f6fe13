"""User paths made absolute at the edge, and outputs written so that nothing half-written is left in place.

Temporary files and folders (`tempfile.mkstemp`, `mkdtemp`) are created 0600 / 0700 whatever the umask; once they
become outputs they get the mode the user's umask gives any new file or folder (`apply_umask`), so a web server or a
sync agent running as another user can read them as the user intended.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def user_path(path: str | os.PathLike[str]) -> Path:
    """A path a user gave, made absolute once at the edge: `~` expanded, `..` normalised, symlinks kept.

    Library entry points call this on every path they are given, so that nothing later depends on the working
    directory (a subprocess runs elsewhere; a notebook may change directory) and messages show where a file is.
    """
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(target: int | str | os.PathLike[str], *, directory: bool = False) -> None:
    """Give a file (a path or an open descriptor) or a folder the mode the umask gives new ones (0666 / 0777 minus
    the umask), e.g. after `tempfile.mkstemp` (0600) or `mkdtemp` (0700)."""
    mode = (0o777 if directory else 0o666) & ~umask()
    if isinstance(target, int):
        os.fchmod(target, mode)
    else:
        os.chmod(target, mode)


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder `src` to `dst`; an existing `dst` is removed only once `src` is in place.

    Both must be on the same file system (build `src` beside `dst`), so each rename is atomic. `src` (made by
    `tempfile.mkdtemp`, 0700) gets the umask's folder mode first.
    """
    apply_umask(src, directory=True)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
