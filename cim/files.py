"""Writing outputs so that nothing half-written is ever left in place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


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
