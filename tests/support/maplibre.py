"""MapLibre's own style specification (npm `@maplibre/maplibre-gl-style-spec`) as a reference for our style
documents, run through node by `tools/maplibre_style.mjs`: it validates a document and evaluates each layer's paint
properties for given features, as MapLibre GL JS would draw them."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tests.support.gltf_validator import REPO_ROOT

SCRIPT = REPO_ROOT / "tools" / "maplibre_style.mjs"
PACKAGE = REPO_ROOT / "node_modules" / "@maplibre" / "maplibre-gl-style-spec"


def evaluate_style(style: Mapping[str, Any], features: Sequence[Mapping[str, Any]], *, zoom: float = 15,
                   densities: Sequence[float] = (0, 0.25, 0.5, 0.75, 1)) -> dict[str, Any]:
    """`{"errors": [...], "layers": {style layer id: {paint property: [value per feature]}}}`; colours as
    [r, g, b, alpha 0-1]; `heatmap-color` evaluated at `densities` instead of per feature.

    Args:
        style: a style document (version 8).
        features: `{"id", "type" (Point/LineString/Polygon), "properties"}` each.
    """
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: install Node.js and run `npm install` in the repository root")
    if not (PACKAGE / "package.json").is_file():
        pytest.skip(f"{PACKAGE} is missing: run `npm install` in the repository root")
    proc = subprocess.run([node, str(SCRIPT)], input=json.dumps({"style": style, "zoom": zoom, "features": features,
                                                                  "densities": list(densities)}),
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} exited {proc.returncode}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)
