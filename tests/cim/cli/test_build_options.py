"""`cim build`'s texture options reach `build_city` as the `GlbOptions` a notebook would pass (the CLI is a thin layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cim.build
from cli import app
from tiles.compression import GlbOptions


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_build_city(out: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        raise SystemExit(0)  # the options are all this test needs; nothing is built

    monkeypatch.setattr(cim.build, "build_city", fake_build_city)
    return seen


def _build(tmp_path: Path, *extra: str) -> Any:
    (tmp_path / "dem.tif").write_bytes(b"")  # typer only checks the option values here; nothing reads the file
    return CliRunner().invoke(app, ["build", str(tmp_path / "out"), "--dem", str(tmp_path / "dem.tif"), *extra])


def test_texture_quality_reaches_the_glb_options(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    res = _build(tmp_path, "--texture-quality", "72", "--textures", "webp")
    assert res.exit_code == 0, res.output
    assert calls[0]["glb"] == GlbOptions(textures="webp", texture_quality=72)


def test_without_texture_quality_the_terrain_chooses_per_texture(calls: list[dict[str, Any]],
                                                                  tmp_path: Path) -> None:
    res = _build(tmp_path)
    assert res.exit_code == 0, res.output
    assert calls[0]["glb"].texture_quality is None and calls[0]["glb"] == GlbOptions()


@pytest.mark.parametrize(("value", "bound"), [("0", "greater than or equal to 1"), ("101", "less than or equal to 100")])
def test_a_texture_quality_out_of_range_is_refused_naming_the_option(calls: list[dict[str, Any]], tmp_path: Path,
                                                                     value: str, bound: str) -> None:
    res = _build(tmp_path, "--texture-quality", value)
    assert res.exit_code == 2 and not calls  # a usage error, before anything is built
    text = " ".join(res.output.replace("│", " ").split())  # rich wraps the message in a box
    assert "Invalid value for '--texture-quality'" in text and bound in text
