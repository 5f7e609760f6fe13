"""CityJSON to 3D Tiles: valid tiles, every vertex within 1 cm, IDs, attributes, per-triangle semantic surfaces,
textures, geographic models, the real Delft model over its terrain, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cim.build import build_city
from cim.cli import main
from cim.errors import InputError
from cim.models.citymodel import CityModelOptions, build_citymodel
from cim.sources import crs as crsmod
from cim.sources.cityjson import read_citymodel
from tests.support.cityjson import every_geometry
from tests.support.paths import SHARED_DATA
from tiles.check import check_tileset
from tiles.gltf import read_glb
from tiles.tileset import Tileset

DELFT = SHARED_DATA / "buildings/delft_lod1.city.json"
DELFT_DTM = SHARED_DATA / "dem/delft_ahn3_dtm_0.5m.tif"


@pytest.fixture(scope="module")
def every(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return every_geometry(tmp_path_factory.mktemp("cityjson"))


@pytest.fixture(scope="module")
def built(every: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("built") / "city"
    report = build_city(out, level=3, citymodel=every, citymodel_options=CityModelOptions(tile_capacity=3))
    return out, report


def _contents(tileset: Path) -> list[tuple[dict, np.ndarray]]:
    """(decoded glb with its path, absolute 4x4 transform) of every content of a tileset (external tilesets
    followed)."""
    out = []
    ts = Tileset.read(tileset)

    def walk(tile, parent: np.ndarray, base: Path) -> None:
        m = parent @ (np.asarray(tile.transform, np.float64).reshape(4, 4).T if tile.transform else np.eye(4))
        if tile.content is not None:
            target = base / tile.content.uri
            if target.suffix == ".json":
                walk(Tileset.read(target).root, m, target.parent)
            else:
                out.append(({**read_glb(target.read_bytes()), "path": target}, m))
        for child in tile.children or []:
            walk(child, m, base)

    walk(ts.root, np.eye(4), tileset.parent)
    return out


def test_every_geometry_type_builds_valid_tiles(built) -> None:
    from tests.support.gltf_validator import assert_valid

    out, report = built
    c = report.citymodel
    assert c["objects"] == 7 and c["tiles"] >= 3
    assert c["object_types"] == {"Building": 2, "BuildingPart": 2, "Road": 1, "SolitaryVegetationObject": 1,
                                 "WaterBody": 1}
    assert c["skipped"]["count"] == 5 and c["missing_textures"] == ["appearance/missing.png"]
    assert any("missing.png" in w for w in report.warnings) and any("5 city object(s) left out" in w
                                                                      for w in report.warnings)
    assert c["semantic_surfaces"] == {"GroundSurface": 1, "WallSurface": 4, "RoofSurface": 2, "TrafficArea": 1,
                                      "AuxiliaryTrafficArea": 1}
    check = check_tileset(out / "tileset.json")
    assert check.ok, check.problems
    assert_valid(out / "citymodel", allow_warnings=False)
    assert json.loads((out / "build.json").read_text())["citymodel"]["objects"] == 7


def test_every_vertex_lands_within_1cm_of_the_source(built, every: Path) -> None:
    out, _ = built
    model = read_citymodel(every)
    tree = cKDTree(model.vertices)
    n = 0
    for glb, m in _contents(out / "tileset.json"):
        for prim in glb["primitives"]:
            ecef = prim["positions"] @ m[:3, :3].T + m[:3, 3]
            src = crsmod.from_ecef("EPSG:4547", ecef)  # pyproj, independent of the builder's path
            d, _ = tree.query(src)
            assert d.max() < 0.01
            n += len(src)
    assert n > 100


def test_ids_attributes_and_semantic_surfaces_per_triangle(built) -> None:
    out, _ = built
    seen: dict[str, dict] = {}
    roof_up = wall_level = ground_down = 0
    kinds: dict[str, set] = {}
    for glb, _ in _contents(out / "tileset.json"):
        objects = glb["tables"]["cityobject"]
        surfaces = glb["tables"]["surface"]["type"]
        for i, oid in enumerate(objects["id"]):
            seen[oid] = {k: v[i] for k, v in objects.items()}
        for prim, spec in zip(glb["primitives"], glb["json"]["meshes"][0]["primitives"], strict=True):
            sets = spec["extensions"]["EXT_mesh_features"]["featureIds"]
            tri = prim["indices"]
            p = prim["positions"][tri]
            normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
            normal /= np.linalg.norm(normal, axis=1, keepdims=True)
            if len(sets) == 1:  # no surface of this primitive has a semantic type: no surface set at all
                assert not prim["extra_feature_ids"]
                sem = np.full(tri.shape, len(surfaces))
            else:
                assert sets[1]["label"] == "surface" and sets[1]["nullFeatureId"] == len(surfaces)
                sem = prim["extra_feature_ids"][0][tri]
            assert (sem == sem[:, :1]).all()  # constant over every triangle
            kind = np.array(surfaces + ["none"])[sem[:, 0].astype(int)]
            owner = np.array(objects["id"])[prim["feature_ids"][tri[:, 0]].astype(int)]
            house = owner == "house"
            roof_up += int((normal[house & (kind == "RoofSurface"), 2] > 0.3).sum())
            wall_level += int((np.abs(normal[house & (kind == "WallSurface"), 2]) < 1e-4).sum())
            ground_down += int((normal[house & (kind == "GroundSurface"), 2] < -0.999).sum())
            kinds.setdefault("road", set()).update(kind[owner == "road"])
            kinds.setdefault("water", set()).update(kind[owner == "water"])
    assert kinds == {"road": {"TrafficArea", "AuxiliaryTrafficArea"}, "water": {"none"}}
    assert roof_up == 4 and ground_down == 2 and wall_level == 10  # 2 roof quads, 1 ground quad, 2 quads + 2 pentagons
    assert set(seen) == {"house", "road", "water", "part_a", "part_b", "tree", "textured"}
    assert seen["house"]["type"] == "Building" and seen["house"]["lod"] == "2.2"
    assert seen["house"]["measuredHeight"] == 9.0 and seen["house"]["建筑高度"] == 9.0
    assert json.loads(seen["house"]["usage"]) == {"main": "residential"}
    assert seen["part_a"]["parent"] == "parted" and seen["part_a"]["层数"] == 3
    assert seen["road"]["name"] == "长安街"


def test_textures_are_carried_with_their_coordinates(built, every: Path) -> None:
    out, _ = built
    png = (every.parent / "appearance/red.png").read_bytes()
    jpg = (every.parent / "appearance/wall.jpg").read_bytes()
    images = {}
    for glb, _ in _contents(out / "tileset.json"):
        js = glb["json"]
        for prim, spec in zip(glb["primitives"], js["meshes"][0]["primitives"], strict=True):
            mat = js["materials"][spec["material"]]
            tex = mat["pbrMetallicRoughness"].get("baseColorTexture")
            if tex is None:
                continue
            image = js["images"][js["textures"][tex["index"]]["source"]]
            assert "TEXCOORD_0" in spec["attributes"]
            images[image["mimeType"]] = _image_bytes(glb["path"], image)
    assert images.keys() == {"image/png", "image/jpeg"} and images["image/png"] == png
    # the JPEG is re-coded losslessly by default (tiles.textures.optimize_jpeg): the same pixels, never more bytes
    assert _pixels(images["image/jpeg"]).tobytes() == _pixels(jpg).tobytes() and len(images["image/jpeg"]) <= len(jpg)


def _pixels(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _image_bytes(path: Path, image: dict) -> bytes:
    from tests.support.feature_metadata import load_gltf

    js, buffers = load_gltf(path)
    view = js["bufferViews"][image["bufferView"]]
    start = view.get("byteOffset", 0)
    return buffers[view["buffer"]][start:start + view["byteLength"]]


@pytest.mark.parametrize("epsg", [4326, 4490])
def test_geographic_models_build_in_a_local_projected_crs(every: Path, tmp_path: Path, epsg: int) -> None:
    doc = json.loads(every.read_text(encoding="utf-8"))
    model = read_citymodel(every)
    lon, lat = crsmod.transformer("EPSG:4547", f"EPSG:{epsg}").transform(model.vertices[:, 0], model.vertices[:, 1])
    scale = [1e-9, 1e-9, 0.001]
    translate = [float(lon.min()), float(lat.min()), float(model.vertices[:, 2].min())]
    geo = np.column_stack([lon, lat, model.vertices[:, 2]])
    doc["vertices"] = np.round((geo - translate) / scale).astype(np.int64).tolist()
    doc["transform"] = {"scale": scale, "translate": translate}
    doc["metadata"]["referenceSystem"] = f"https://www.opengis.net/def/crs/EPSG/0/{epsg}"
    path = every.parent / f"geo{epsg}.city.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    res = build_citymodel(path, tmp_path, options=CityModelOptions(workers=1))
    assert res.working_crs.to_epsg() == (4547 if epsg == 4490 else 32650)  # 114.0 E: GK CM 114E, UTM 50N
    source = read_citymodel(path).vertices
    src_xyz = np.column_stack([*crsmod.transformer(f"EPSG:{epsg}", "EPSG:4547").transform(source[:, 0],
                                                                                          source[:, 1]), source[:, 2]])
    tree = cKDTree(src_xyz)
    for glb_path in sorted((tmp_path / "citymodel").glob("*.glb")):
        glb = read_glb(glb_path.read_bytes())
        tile = next(t for t, _ in _tiles(res.root) if t.content and t.content.uri.endswith(glb_path.name))
        m = np.asarray(tile.transform, np.float64).reshape(4, 4).T
        for prim in glb["primitives"]:
            ecef = prim["positions"] @ m[:3, :3].T + m[:3, 3]
            back = crsmod.from_ecef(f"EPSG:{epsg}", ecef)  # lon, lat, h in the model's own CRS
            xy = crsmod.transformer(f"EPSG:{epsg}", "EPSG:4547").transform(back[:, 0], back[:, 1])
            d, _ = tree.query(np.column_stack([*xy, back[:, 2]]))
            assert d.max() < 0.01


def _tiles(root):
    stack = [(root, None)]
    while stack:
        tile, parent = stack.pop()
        yield tile, parent
        stack.extend((c, tile) for c in tile.children or [])


def test_no_object_at_the_lod_asked_for_is_a_clear_error(every: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no LoD 3 geometry"):
        build_citymodel(every, tmp_path, options=CityModelOptions(lod="3"))


def test_cli_builds_a_city_model_with_json(every: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path / "o"), "--level", "3", "--citymodel", str(every), "--lod", "1", "--json"])
    assert exc.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["citymodel"]["lods"] == {"1": 5} and report["inputs"]["citymodel"] == str(every)


def test_delft_model_lands_where_its_crs_says_over_its_terrain(tmp_path: Path) -> None:
    if not DELFT.is_file() or not DELFT_DTM.is_file():
        pytest.skip(f"real data {DELFT} / {DELFT_DTM} is absent (../shared/data)")
    out = tmp_path / "delft"
    report = build_city(out, level=3, citymodel=DELFT, dem=DELFT_DTM)
    c = report.citymodel
    assert c["objects"] == 570 and c["skipped"]["count"] == 0 and c["crs"] == "Amersfoort / RD New + NAP height"
    # where EPSG:28992 puts the file's vertices (pyproj's 2D transform, independently of the builder's 3D one)
    model = read_citymodel(DELFT)
    v = model.vertices[np.unique(model.corner_vertex)]
    lon, lat = crsmod.transformer("EPSG:28992", "EPSG:4326").transform(v[:, 0], v[:, 1])
    assert np.allclose(c["lonlat_bounds"], [lon.min(), lat.min(), lon.max(), lat.max()], atol=2e-7)  # ~2 cm
    assert 4.36 < lon.mean() < 4.37 and 52.01 < lat.mean() < 52.014  # Delft, by TU Delft's campus
    assert check_tileset(out / "tileset.json").ok
    # every vertex within 1 cm of the file's, and the buildings standing on the terrain built beside them: the
    # lowest output vertex of each building (back in EPSG:28992 + h) against the DTM the terrain was built from
    # (the terrain mesh keeps within its 0.5 m max error of it; its vertices are too sparse to compare with)
    import rasterio

    tree = cKDTree(model.vertices)
    dtm = rasterio.open(DELFT_DTM)
    ground = dtm.read(1, masked=True)
    gaps = []
    for glb, m in _contents(out / "citymodel" / "tileset.json"):
        table = glb["tables"]["cityobject"]
        for prim in glb["primitives"]:
            src = crsmod.from_ecef("EPSG:28992", prim["positions"] @ m[:3, :3].T + m[:3, 3])
            assert tree.query(src)[0].max() < 0.01
            owner = prim["feature_ids"].astype(int)
            for f in np.unique(owner):
                if table["type"][f] != "Building":
                    continue
                mine = src[owner == f]
                low = mine[np.argmin(mine[:, 2])]
                r, c = dtm.index(low[0], low[1])
                if 0 <= r < ground.shape[0] and 0 <= c < ground.shape[1] and not np.ma.getmaskarray(ground)[r, c]:
                    gaps.append(low[2] - float(ground[r, c]))
    dtm.close()
    assert len(gaps) > 100 and abs(float(np.median(gaps))) < 0.5


def test_an_interrupted_city_model_build_resumes_to_the_same_bytes(every: Path, tmp_path: Path) -> None:
    """The city model's tiles are tasks of the resumable build: a stopped build picks up the tiles it finished and
    ends with the bytes of an uninterrupted one; another LoD or another file is another build (nothing reused)."""
    from cim.tiling import SYNCHRONOUS

    opts = CityModelOptions(tile_capacity=1)
    ref = build_city(tmp_path / "ref", level=3, citymodel=every, citymodel_options=opts, scheduler=SYNCHRONOUS)
    assert ref.citymodel["tiles"] >= 5

    def stop_after_three(stage: str, done: int, total: int) -> None:
        if stage == "citymodel" and done >= 3:
            raise KeyboardInterrupt

    out, work = tmp_path / "city", tmp_path / ".city.building"
    with pytest.raises(KeyboardInterrupt):
        build_city(out, level=3, citymodel=every, citymodel_options=opts, scheduler=SYNCHRONOUS,
                   progress=stop_after_three)
    assert not out.exists() and (work / ".cim-manifest").is_file()
    with pytest.raises(KeyboardInterrupt):  # the same build with another LoD starts afresh: stopped at 3 again
        build_city(out, level=3, citymodel=every, citymodel_options=CityModelOptions(tile_capacity=1, lod="1"),
                   scheduler=SYNCHRONOUS, progress=stop_after_three)
    with pytest.raises(KeyboardInterrupt):  # back to the first options: the LoD-1 run's manifest is not theirs
        build_city(out, level=3, citymodel=every, citymodel_options=opts, scheduler=SYNCHRONOUS,
                   progress=stop_after_three)
    report = build_city(out, level=3, citymodel=every, citymodel_options=opts, scheduler=SYNCHRONOUS)
    assert report.dask["resumed"] == {"citymodel": 3} and not work.exists()
    files = sorted(p.relative_to(out) for p in out.rglob("*.glb"))
    assert files == sorted(p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*.glb"))
    assert all((out / f).read_bytes() == (tmp_path / "ref" / f).read_bytes() for f in files)
    assert (out / "citymodel/tileset.json").read_bytes() == (tmp_path / "ref/citymodel/tileset.json").read_bytes()
