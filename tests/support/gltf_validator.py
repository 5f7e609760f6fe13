"""Validate glTF/GLB files with the Khronos glTF validator, run through node by `tools/validate_gltf.mjs`.

One node process validates any number of files (here: 0.1 s to start, about 3 ms per small glb after that). The
Khronos validator does not know `EXT_mesh_features` or `EXT_structural_metadata` (it only reports
`UNSUPPORTED_EXTENSION` at info level), so each report also carries the findings of
`tests.support.feature_metadata.check_feature_metadata` for those two extensions.

Nor does it decode `EXT_meshopt_compression` or `KHR_draco_mesh_compression`: a compressed glb is also decompressed
with the reference decoders (`tools/decompress_glb.mjs`: npm `meshoptimizer` and `draco3d`) and the decompressed asset
is validated as well (accessor bounds, index ranges, feature metadata against the decoded feature IDs); a report
holds the findings on both.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.feature_metadata import check_feature_metadata

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "validate_gltf.mjs"
DECOMPRESS = REPO_ROOT / "tools" / "decompress_glb.mjs"
COMPRESSION_EXTENSIONS = ("EXT_meshopt_compression", "KHR_draco_mesh_compression")
VALIDATOR_PACKAGE = REPO_ROOT / "node_modules" / "gltf-validator"

ERROR, WARNING, INFO, HINT = 0, 1, 2, 3


class Message(NamedTuple):
    """One issue: Khronos code (e.g. `ACCESSOR_INDEX_OOB`), severity (0 error .. 3 hint), JSON pointer, text."""

    code: str
    severity: int
    pointer: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.code} at {self.pointer or '-'}: {self.message}"


class Report(NamedTuple):
    """The validation of one file."""

    path: Path
    num_errors: int
    num_warnings: int
    num_infos: int
    num_hints: int
    messages: tuple[Message, ...]
    extensions_used: tuple[str, ...]
    failure: str | None  # the validator could not read the file at all
    metadata_errors: tuple[str, ...]  # EXT_mesh_features / EXT_structural_metadata problems

    @property
    def ok(self) -> bool:
        """True when neither the Khronos validator nor the metadata check found an error."""
        return self.num_errors == 0 and not self.metadata_errors

    def codes(self, max_severity: int = HINT) -> list[str]:
        """Issue codes with severity at most `max_severity` (ERROR = errors only)."""
        return [m.code for m in self.messages if m.severity <= max_severity]

    def describe(self) -> str:
        """Errors and warnings in a few lines, for assertion messages."""
        lines = [f"{self.path}: {self.num_errors} errors, {self.num_warnings} warnings"]
        if self.failure:
            lines.append(f"  cannot validate: {self.failure}")
        lines += [f"  {'error' if m.severity == ERROR else 'warning'}: {m}" for m in self.messages if m.severity <= 1]
        lines += [f"  metadata error: {e}" for e in self.metadata_errors]
        return "\n".join(lines)


def require_validator() -> str:
    """The path of `node`, or skip the calling test when node or the npm package is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: install Node.js and run `npm install` in the repository root")
    if not (VALIDATOR_PACKAGE / "package.json").is_file():
        pytest.skip(f"{VALIDATOR_PACKAGE} is missing: run `npm install` in the repository root")
    return node


def validate(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    ignore: Iterable[str] = (),
    metadata: bool = True,
    timeout: float = 300.0,
) -> list[Report]:
    """Validate .glb/.gltf files (directories are searched recursively) in one node process.

    Args:
        paths: files or directories.
        ignore: Khronos issue codes to mute (e.g. `UNSUPPORTED_EXTENSION`).
        metadata: also check EXT_mesh_features / EXT_structural_metadata content.
        timeout: seconds before node is stopped.

    Returns:
        One report per file, in the order the script found them.
    """
    node = require_validator()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [f for p in paths for f in _expand(Path(p))]
    if not files:
        return []
    with tempfile.TemporaryDirectory(prefix="gltf-decompressed-") as tmp:
        plain = decompress(files, Path(tmp), timeout=timeout)
        raws = _run(node, [*files, *plain.values()], ignore, timeout)
        by_path = {Path(r["path"]): r for r in raws}
        reports = []
        for f in files:
            raw = by_path[f]
            problems: list[str] = []
            target = plain.get(f, f)
            extra = by_path.get(target) if target != f else None
            if extra is not None:
                for key in ("numErrors", "numWarnings", "numInfos", "numHints"):
                    raw[key] += extra[key]
                raw["messages"] += [{**m, "pointer": f"decompressed:{m['pointer']}"} for m in extra["messages"]]
                raw["failure"] = raw["failure"] or extra["failure"]
            if isinstance(target, str):  # the reference decoders failed on it
                raw["numErrors"] += 1
                raw["failure"] = raw["failure"] or f"reference decoders: {target}"
            elif metadata and raw["failure"] is None:
                try:
                    problems = check_feature_metadata(target)
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    problems = [f"cannot read the asset for the metadata check: {exc!r}"]
            reports.append(Report(
                path=f,
                num_errors=raw["numErrors"],
                num_warnings=raw["numWarnings"],
                num_infos=raw["numInfos"],
                num_hints=raw["numHints"],
                messages=tuple(Message(m["code"], m["severity"], m["pointer"], m["message"]) for m in raw["messages"]),
                extensions_used=tuple(raw["extensionsUsed"]),
                failure=raw["failure"],
                metadata_errors=tuple(problems),
            ))
    return reports


def _expand(p: Path) -> list[Path]:
    """A file, or the .glb/.gltf files under a folder in sorted order (as `validate_gltf.mjs` walks it)."""
    if not p.is_dir():
        return [p]
    out: list[Path] = []
    for name in sorted(os.listdir(p)):
        child = p / name
        if child.is_dir() or child.suffix.lower() in (".glb", ".gltf"):
            out += _expand(child)
    return out


def _run(node: str, files: list[Path], ignore: Iterable[str], timeout: float) -> list[dict]:
    cmd = [node, str(SCRIPT), *(os.fspath(f) for f in files)]
    if ignore:
        cmd[2:2] = ["--ignore", ",".join(ignore)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{SCRIPT.name} exited {proc.returncode}: {proc.stderr.strip()}")
    return [json.loads(line) for line in proc.stdout.splitlines()]


def compression_of(path: Path) -> set[str]:
    """The compression extensions a glb uses (read from its JSON chunk only)."""
    if path.suffix.lower() != ".glb":
        return set()
    with open(path, "rb") as fh:
        head = fh.read(20)
        if len(head) < 20 or struct.unpack_from("<I", head, 0)[0] != 0x46546C67:
            return set()
        doc = json.loads(fh.read(struct.unpack_from("<I", head, 12)[0]))
    return set(doc.get("extensionsUsed", [])) & set(COMPRESSION_EXTENSIONS)


def decompress(files: Iterable[Path], out_dir: Path, *, timeout: float = 300.0) -> dict[Path, Path | str]:
    """Decompress the compressed glbs among `files` with the reference decoders into `out_dir`.

    Returns:
        original path -> decompressed path, or -> the decoder's failure message.
    """
    todo = [f for f in files if compression_of(f)]
    if not todo:
        return {}
    if not (REPO_ROOT / "node_modules" / "meshoptimizer" / "package.json").is_file():
        pytest.skip("npm meshoptimizer/draco3d are missing: run `npm install` in the repository root")
    pairs: list[str] = []
    names: dict[str, Path] = {}
    for i, f in enumerate(todo):
        target = out_dir / f"{i}-{f.name}"
        names[os.fspath(f)] = target
        pairs += [os.fspath(f), os.fspath(target)]
    proc = subprocess.run([require_validator(), str(DECOMPRESS), *pairs], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{DECOMPRESS.name} exited {proc.returncode}: {proc.stderr.strip()}")
    out: dict[Path, Path | str] = {}
    for line in proc.stdout.splitlines():
        raw = json.loads(line)
        out[Path(raw["in"])] = raw.get("failure") or names[raw["in"]]
    return out


def assert_valid(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    allow_warnings: bool = True,
    ignore: Iterable[str] = (),
) -> list[Report]:
    """Fail the test, listing every message, unless all files are valid glTF with valid feature metadata.

    Args:
        paths: files or directories (at least one .glb/.gltf must be found).
        allow_warnings: when False, Khronos warnings fail too.
        ignore: Khronos issue codes to mute.

    Returns:
        The reports, for further assertions.
    """
    reports = validate(paths, ignore=ignore)
    if not reports:
        pytest.fail(f"no .glb/.gltf file found in {paths!r}")
    bad = [r for r in reports if not r.ok or (not allow_warnings and r.num_warnings)]
    if bad:
        pytest.fail("glTF validation failed:\n" + "\n".join(r.describe() for r in bad), pytrace=False)
    return reports
