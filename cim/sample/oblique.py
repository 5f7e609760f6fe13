"""The synthetic oblique-photography production of a sample city (ContextCapture layout, `.osgb` or OBJ)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from cim.errors import InputError, OutputExistsError
from cim.files import replace_dir
from cim.sample.city import SampleCity, load
from cim.sample.common import _META, CRS, MANIFEST, OBLIQUE_DIR


def write_oblique(city: SampleCity, out: str | Path, *, tile_size: float = 250.0,
                  fmt: Literal["osgb", "obj"] | None = None, overwrite: bool = False) -> Path:
    """A synthetic oblique-photography production of a sample city (for the level-3 build and its tests).

    The city's DSM (buildings with their roof shapes) becomes a textured mesh in the ContextCapture layout
    (`metadata.xml` + `Data/Tile_+xxx_+yyy/`, two pyramid levels, the orthophoto as texture): `.osgb` when osgconv
    is installed, else OBJ (see `cim.sources.contextcapture.write_dsm_production`) into any folder `out`; the city's
    manifest does not change (`add_oblique` writes it into the city and lists it).

    Raises:
        InputError: the city has no DSM or no orthophoto.
        OutputExistsError: `out` exists and is not empty, without `overwrite`.
    """
    from cim.sources.contextcapture import write_dsm_production
    from cim.sources.osgb import has_osgconv

    if city.dsm is None or city.ortho is None:
        raise InputError(f"sample city {city.root} has no DSM or orthophoto; generate it with rasters and ortho")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"output {out} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_dsm_production(work, city.dsm, city.ortho, bounds=city.bounds, tile_size=tile_size,
                             fmt=fmt or ("osgb" if has_osgconv() else "obj"))
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def add_oblique(city: SampleCity, *, tile_size: float = 250.0,
                fmt: Literal["osgb", "obj"] | None = None) -> SampleCity:
    """Write the synthetic oblique production into the city's folder (`oblique/`) and list it in the manifest.

    The manifest entry has kind "oblique", path `oblique/metadata.xml`, the format (osgb or obj), the number of
    tiles and the tile size. The production is large (about 80 MB as .osgb, 160 MB as OBJ for the default city),
    so the repository's committed city leaves it out, like the orthophoto; `default_sample()` does not add it
    either: the level-3 build and `cim demo` write it beside the cached city when they need it.

    Args:
        city: a sample city with a DSM and an orthophoto.
        tile_size: tile side in metres.
        fmt: "osgb" or "obj"; default osgb when osgconv is installed, else obj.

    Returns:
        The city re-read from its manifest (with `oblique` set).

    Raises:
        InputError: the city has no DSM or no orthophoto.
    """
    from cim.sources.osgb import has_osgconv

    fmt = fmt or ("osgb" if has_osgconv() else "obj")
    folder = write_oblique(city, city.root / OBLIQUE_DIR, tile_size=tile_size, fmt=fmt, overwrite=True)
    files = [p for p in folder.rglob("*") if p.is_file()]
    zh, en, theme, dept, sec = _META["oblique"]
    entry = {
        "kind": "oblique", "path": f"{OBLIQUE_DIR}/metadata.xml", "layer": "oblique", "title_zh": zh, "title_en": en,
        "theme": theme, "department": dept, "security": sec, "geometry_type": None, "feature_count": None,
        "crs": CRS, "bounds": [round(float(v), 3) for v in city.bounds], "format": fmt,
        "tiles": sum(1 for p in (folder / "Data").iterdir() if p.is_dir()), "tile_size": tile_size,
        "files": len(files), "bytes": sum(p.stat().st_size for p in files),
    }
    doc = json.loads(city.manifest.read_text(encoding="utf-8"))
    doc["files"] = [e for e in doc["files"] if e["kind"] != "oblique"] + [entry]
    tmp = city.manifest.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(city.manifest)
    return load(city.root)
