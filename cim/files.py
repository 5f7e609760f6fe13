"""User paths made absolute at the edge, and outputs written so that nothing half-written is left in place."""

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


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder `src` to `dst`; an existing `dst` is removed only once `src` is in place.

    Both must be on the same file system (build `src` beside `dst`), so each rename is atomic.
    """
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
