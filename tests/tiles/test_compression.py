"""Compressed glb (EXT_meshopt_compression + KHR_mesh_quantization, KHR_draco_mesh_compression) and texture encodings.

Every compressed file is decoded by the reference decoders (npm `meshoptimizer`, `draco3d`; see
`tests.support.gltf_validator.decompress`) and every decoded vertex is compared with what the builder gave: feature
ID exact, position within the quantization tolerance.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from tests.support.gltf_validator import assert_valid, decompress
from tiles.compression import GlbOptions, max_part_extent
from tiles.errors import TilesError
from tiles.gltf import Material, MeshContent, Primitive, PropertyTable, parse_glb, read_glb, vertex_normals

TOL = 0.005


def _boxes(n: int, spread: float, seed: int = 7) -> tuple[list[Primitive], int]:
    """`n` boxes (8 shared corners each, so normals are smooth) scattered over `spread` metres, one feature each,
    split over a textured and a plain primitive sharing one texture through two equal Material objects."""
    rng = np.random.default_rng(seed)
    corner = np.array([[x, y, z] for z in (0, 1) for y in (0, 1) for x in (0, 1)], float)
    faces = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4], [2, 6, 3], [3, 6, 7],
                      [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]])
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    prims = []
    for half in range(2):
        pos, tris, fid = [], [], []
        for k in range(half, n, 2):
            size = rng.uniform(5, 30, 3)
            origin = rng.uniform(0, spread, 3) * (1, 1, 0.02) + 0.123456
            tris.append(faces + 8 * len(pos))
            pos.append(origin + corner * size)
            fid.append(np.full(8, k))
        p, t = np.concatenate(pos), np.concatenate(tris)
        uv = (p[:, :2] - p[:, :2].min(axis=0)) / np.ptp(p[:, :2], axis=0)
        prims.append(Primitive(p.astype(np.float32), t, vertex_normals(p, t), texcoords=uv,
                               feature_ids=np.concatenate(fid),
                               material=Material(texture=jpeg.getvalue()) if half == 0 else Material()))
    return prims, n


def _content(n: int = 60, spread: float = 300.0) -> MeshContent:
    prims, n = _boxes(n, spread)
    table = PropertyTable("building", {"code": [f"B-{i:04d}" for i in range(n)], "height": np.arange(n) * 1.5,
                                       "floors": pd.array([i % 9 or None for i in range(n)], dtype="Int64")})
    return MeshContent(prims, table)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same content written with each compression (300 m and 2 km wide), and the reference decoders' output."""
    out = tmp_path_factory.mktemp("compressed")
    files = {}
    for spread in (300.0, 2000.0):
        content = _content(spread=spread)
        for c in ("none", "meshopt", "draco"):
            path = out / f"{c}-{int(spread)}.glb"
            path.write_bytes(content.to_glb(GlbOptions(compression=c)))
            files[(c, spread)] = (content, path)
    decoded = decompress([p for _, p in files.values()], out)
    return files, decoded


def _decoded_vertices(glb: dict) -> tuple[np.ndarray, np.ndarray]:
    pos = np.concatenate([p["positions"] for p in glb["primitives"]])
    fid = np.concatenate([p["feature_ids"] for p in glb["primitives"]])
    return pos, fid


@pytest.mark.parametrize("compression", ["meshopt", "draco"])
@pytest.mark.parametrize("spread", [300.0, 2000.0])
def test_reference_decoders_give_every_vertex_its_feature_id_and_place(written, compression, spread):
    files, decoded = written
    content, path = files[(compression, spread)]
    plain = decoded[path]
    assert not isinstance(plain, str), plain
    glb = read_glb(plain.read_bytes())
    pos, fid = _decoded_vertices(glb)
    src = np.concatenate([np.asarray(p.positions, np.float64) for p in content.primitives])
    src_fid = np.concatenate([p.feature_ids for p in content.primitives])
    # per axis error <= tolerance (+ float32 rounding), so in 3D <= tolerance * sqrt(3)
    bound = TOL * np.sqrt(3) + 1e-4
    for a, fa, b, fb in ((src, src_fid, pos, fid), (pos, fid, src, src_fid)):
        tree = cKDTree(b)
        for i in range(len(a)):
            near = tree.query_ball_point(a[i], bound)
            assert near and fa[i] in set(fb[near].tolist()), f"vertex {i} ({a[i]}, feature {fa[i]}) not decoded"
    assert sum(len(p["indices"]) for p in glb["primitives"]) == sum(len(p.indices) for p in content.primitives)
    # our own decoder (read_glb on the compressed file) agrees with the reference decoders
    ours = read_glb(path.read_bytes())
    ours_pos, ours_fid = _decoded_vertices(ours)
    assert len(ours_pos) == len(pos) and np.abs(np.sort(ours_pos, axis=0) - np.sort(pos, axis=0)).max() < 1e-6
    assert sorted(ours_fid.tolist()) == sorted(fid.tolist())


def test_meshopt_with_quantization_is_the_default_and_required():
    doc, _ = parse_glb(_content().to_glb())
    assert set(doc["extensionsRequired"]) >= {"EXT_meshopt_compression", "KHR_mesh_quantization"}
    assert doc["buffers"][1]["extensions"]["EXT_meshopt_compression"] == {"fallback": True}
    prim = doc["meshes"][0]["primitives"][0]
    position = doc["accessors"][prim["attributes"]["POSITION"]]
    assert position["componentType"] == 5123 and not position.get("normalized")
    assert doc["nodes"][0]["scale"] == [2 * TOL] * 3  # the grid step, dequantized by the node
    views = [doc["bufferViews"][doc["accessors"][a]["bufferView"]] for a in prim["attributes"].values()]
    assert all(v["buffer"] == 1 and "EXT_meshopt_compression" in v["extensions"] for v in views)


@pytest.mark.parametrize("compression", ["none", "meshopt", "draco"])
def test_feature_ids_are_unsigned_integers_and_property_tables_aligned(written, compression):
    files, _ = written
    doc, _ = parse_glb(files[(compression, 300.0)][1].read_bytes())
    for mesh in doc["meshes"]:
        for prim in mesh["primitives"]:
            assert doc["accessors"][prim["attributes"]["_FEATURE_ID_0"]]["componentType"] == 5123
    table = doc["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    compressed = set()
    for name, entry in table["properties"].items():
        for key in ("values", "stringOffsets"):
            if key in entry:
                view = doc["bufferViews"][entry[key]]
                # 8-byte aligned where a client reads it: the glb's buffer, or meshopt's fallback buffer it decodes to
                assert view["byteOffset"] % 8 == 0
                ext = (view.get("extensions") or {}).get("EXT_meshopt_compression")
                assert view["buffer"] == (1 if ext else 0)
                if ext:
                    assert ext["mode"] == "ATTRIBUTES" and ext["byteStride"] * ext["count"] == view["byteLength"]
                    assert "target" not in view and "byteStride" not in view
                    compressed.add(name)
    # meshopt compresses the float64 heights (0, 1.5, 3, ...) and the int32 floors; the 60 codes (B-0000, 360 bytes)
    # and their offsets gain less than the extension's JSON costs; the other encodings leave tables as they are
    assert compressed == ({"height", "floors"} if compression == "meshopt" else set())


def test_more_features_than_uint16_stay_exact_as_float():
    n = 70000
    pos = np.zeros((3 * n, 3))
    pos[:, 0] = np.arange(3 * n) * 0.002
    pos[1::3, 1] = 1.0
    tris = np.arange(3 * n).reshape(-1, 3)
    fids = np.repeat(np.arange(n), 3)
    glb = read_glb(MeshContent([Primitive(pos, tris, feature_ids=fids)]).to_glb(GlbOptions(compression="none")))
    acc = glb["json"]["accessors"][glb["json"]["meshes"][0]["primitives"][0]["attributes"]["_FEATURE_ID_0"]]
    assert acc["componentType"] == 5126
    got = glb["primitives"][0]
    order = np.lexsort((got["positions"][:, 1], got["positions"][:, 0]))
    assert np.array_equal(got["feature_ids"][order], fids[np.lexsort((pos[:, 1], pos[:, 0]))])


def test_wide_content_takes_the_smaller_of_16_bit_parts_and_one_float32_grid(written):
    """Content wider than one 16-bit grid (655 m at 1 cm) is cut into parts, each a node with its own grid, or put
    on one grid of the same step held in float32 (integers, exact), whichever file is smaller. Both keep every
    vertex within the tolerance; for these 60 boxes over 2 km the parts' JSON outweighs what 16-bit coordinates save
    (on the sample city's level 2, the coarse terrain tiles take one grid, the building tiles parts)."""
    from tiles.gltf import _Decoder, _Encoder

    files, _ = written
    content, path = files[("meshopt", 2000.0)]
    parts = _Encoder(content, GlbOptions()).encode()
    one = _Encoder(content, GlbOptions(), one_grid=True).encode()
    assert path.read_bytes() == one and len(one) < len(parts)
    limit = max_part_extent(TOL)
    for data, cut in ((parts, True), (one, False)):
        glb = read_glb(data)
        doc = glb["json"]
        nodes = doc["nodes"]
        assert (len(nodes) > 1) == cut and all(n["scale"] == [2 * TOL] * 3 for n in nodes)
        dec = _Decoder(doc, parse_glb(data)[1])
        for node in nodes:
            for prim in doc["meshes"][node["mesh"]]["primitives"]:
                acc = doc["accessors"][prim["attributes"]["POSITION"]]
                extent = max(hi - lo for lo, hi in zip(acc["min"], acc["max"]))
                if cut:
                    assert acc["componentType"] == 5123 and extent * node["scale"][0] <= limit
                else:
                    assert acc["componentType"] == 5126 and extent * node["scale"][0] > limit
                    q = dec.accessor(prim["attributes"]["POSITION"])
                    assert np.array_equal(q, np.rint(q)) and q.min() >= 0 and q.max() < 2**24
        # parts come back joined: one entry per source primitive, every vertex within the tolerance
        assert len(glb["primitives"]) == 2
        for src, got in zip(content.primitives, glb["primitives"]):
            dist, _ = cKDTree(got["positions"]).query(np.asarray(src.positions, np.float64))
            assert dist.max() <= TOL * np.sqrt(3) + 1e-4


def test_equal_textures_and_materials_are_stored_once():
    a = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(a, "JPEG")
    quad = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    prims = [Primitive(quad + k, tris, texcoords=quad[:, :2], material=Material(texture=a.getvalue(), unlit=True))
             for k in range(3)]
    prims.append(Primitive(quad, tris, material=Material(base_color=(1, 0, 0, 1))))
    for c in ("none", "meshopt", "draco"):
        doc, _ = parse_glb(MeshContent(prims).to_glb(GlbOptions(compression=c)))
        assert len(doc["images"]) == 1 and len(doc["textures"]) == 1 and len(doc["materials"]) == 2


def test_khronos_validator_finds_nothing_in_any_compression(written, tmp_path):
    files, _ = written
    assert_valid([p for _, p in files.values()], allow_warnings=False)


def test_bad_options_are_refused():
    with pytest.raises(TilesError, match="compression 'zip'"):
        GlbOptions(compression="zip")  # type: ignore[arg-type]
    with pytest.raises(TilesError, match="position_tolerance"):
        GlbOptions(position_tolerance=0)


def test_webp_textures_with_and_without_fallback(tmp_path):
    prims, _ = _boxes(4, 50)
    for fallback in (False, True):
        data = MeshContent(prims).to_glb(GlbOptions(textures="webp", texture_fallback=fallback))
        doc, _ = parse_glb(data)
        tex = doc["textures"][0]
        assert doc["images"][tex["extensions"]["EXT_texture_webp"]["source"]]["mimeType"] == "image/webp"
        assert ("EXT_texture_webp" in doc.get("extensionsRequired", [])) is not fallback
        assert ("source" in tex) is fallback
        (tmp_path / f"webp-{fallback}.glb").write_bytes(data)
    assert_valid(tmp_path, allow_warnings=False)


def test_ktx2_textures_with_and_without_fallback(tmp_path):
    from tiles.textures import TextureEncoderMissing, basisu_path

    try:
        basisu_path()
    except TextureEncoderMissing as exc:
        pytest.skip(str(exc))
    prims, _ = _boxes(4, 50)
    for fallback in (False, True):
        data = MeshContent(prims).to_glb(GlbOptions(textures="ktx2", texture_fallback=fallback))
        doc, blob = parse_glb(data)
        tex = doc["textures"][0]
        image = doc["images"][tex["extensions"]["KHR_texture_basisu"]["source"]]
        view = doc["bufferViews"][image["bufferView"]]
        ktx = blob[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
        assert image["mimeType"] == "image/ktx2" and ktx[:12] == b"\xabKTX 20\xbb\r\n\x1a\n"
        assert ("KHR_texture_basisu" in doc.get("extensionsRequired", [])) is not fallback
        (tmp_path / f"ktx2-{fallback}.glb").write_bytes(data)
    # gltf-validator 2.0.0-dev.3.10 does not know KHR_texture_basisu: it warns that image/ktx2 is not a MIME type
    # it lists and that it cannot read the image; nothing else may come up
    reports = assert_valid(tmp_path)
    for r in reports:
        assert "KHR_texture_basisu" in r.extensions_used
        warned = {(m.code, m.pointer.removeprefix("decompressed:")) for m in r.messages if m.severity == 1}
        assert warned == {("VALUE_NOT_IN_LIST", "/images/0/mimeType"), ("IMAGE_UNRECOGNIZED_FORMAT", "/images/0")}


def _photo(h: int = 96, w: int = 128) -> np.ndarray:
    """Photo-like pixels: smooth gradients plus texture (roofs and fields seen from above)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    rng = np.random.default_rng(3)
    base = np.stack([100 + 60 * np.sin(xx / 9), 120 + 50 * np.cos(yy / 7), 90 + 0.5 * xx], axis=-1)
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def test_textures_the_engine_makes_are_webp_by_default_with_a_jpeg_fallback_on_request(tmp_path):
    from tiles.textures import encode_texture

    pixels = _photo()
    quad = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    for options, mimes, required in ((GlbOptions(), ["image/webp"], True),
                                     (GlbOptions(texture_fallback=True), ["image/webp", "image/jpeg"], False),
                                     (GlbOptions(textures="original"), ["image/jpeg"], None)):
        data, mime = encode_texture(pixels, options)
        back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), float)
        assert mime == mimes[0] and back.shape == pixels.shape
        assert 10 * np.log10(255**2 / np.mean((back - pixels) ** 2)) > 30  # the pixels, not a blank image
        glb = MeshContent([Primitive(quad, tris, texcoords=quad[:, :2],
                                     material=Material(texture=data, mime_type=mime))]).to_glb(options)
        doc, _ = parse_glb(glb)
        assert sorted(i["mimeType"] for i in doc["images"]) == sorted(mimes)
        if required is not None:
            assert ("EXT_texture_webp" in doc.get("extensionsRequired", [])) is required
            assert ("source" in doc["textures"][0]) is not required  # the fallback is the core source
        else:
            assert "EXT_texture_webp" not in doc.get("extensionsUsed", [])
        (tmp_path / f"{len(mimes)}-{required}.glb").write_bytes(glb)
    assert_valid(tmp_path, allow_warnings=False)


def test_a_production_jpeg_keeps_its_pixels_in_fewer_bytes_by_default(tmp_path):
    from tiles.textures import optimize_jpeg, texture_variants

    buf = io.BytesIO()
    Image.fromarray(_photo(256, 384)).save(buf, "JPEG", quality=90)  # baseline, standard Huffman tables
    given = buf.getvalue()
    (data, mime), = texture_variants(given, "image/jpeg", GlbOptions())
    assert mime == "image/jpeg" and len(data) < 0.97 * len(given)
    assert b"\xff\xc2" in data and b"\xff\xc2" not in given  # progressive scans (SOF2) instead of baseline
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(given)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # lossless: every pixel as the production's JPEG
    assert texture_variants(given, "image/jpeg", GlbOptions(textures="original")) == [(given, "image/jpeg")]
    assert optimize_jpeg(data) == data  # already optimal: kept
    broken = given[:600]  # MozJPEG cannot read it: the image stays as the production holds it
    assert optimize_jpeg(broken) == broken
    quad = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    glb = MeshContent([Primitive(quad, np.array([[0, 1, 2], [0, 2, 3]]), texcoords=quad[:, :2],
                                 material=Material(texture=given))]).to_glb(GlbOptions())
    doc, blob = parse_glb(glb)
    view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    assert blob[view.get("byteOffset", 0):view.get("byteOffset", 0) + view["byteLength"]] == data
    (tmp_path / "progressive.glb").write_bytes(glb)
    assert_valid(tmp_path, allow_warnings=False)


def test_string_offsets_are_16_bit_below_64_kib_and_32_bit_above():
    prims, _ = _boxes(2, 10)
    for n, length, kind in ((2, 5, "UINT16"), (2, 40_000, "UINT32")):
        names = [f"{i}" * length for i in range(n)]
        glb = MeshContent(prims, PropertyTable("building", {"name": names, "code": ["北京", "大同"]})).to_glb(
            GlbOptions())
        doc, _ = parse_glb(glb)
        props = doc["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["properties"]
        assert props["name"]["stringOffsetType"] == kind and props["code"]["stringOffsetType"] == "UINT16"
        assert doc["bufferViews"][props["name"]["stringOffsets"]]["byteLength"] == (n + 1) * (2 if kind ==
                                                                                               "UINT16" else 4)
        back = read_glb(glb)["properties"]
        assert back["name"] == names and back["code"] == ["北京", "大同"]


def test_category_columns_are_enums_and_read_back_as_their_strings(tmp_path):
    from tests.support.feature_metadata import check_feature_metadata

    prims, _ = _boxes(2, 10)
    n = 2000
    uses = ["住宅", "商业", "工业", "教育", "医疗"]
    columns = {
        "use": [uses[i % 5] for i in range(n)],  # 5 names: UINT8
        "street": [f"街道{i % 300:03d}" for i in range(n)],  # 300 names: UINT16
        "code": [f"B{i:06d}" for i in range(n)],  # all distinct: an enum would be larger
        "with_null": [None if i == 7 else uses[i % 5] for i in range(n)],  # a null: stays STRING (noData)
        "with_empty": ["" if i == 7 else uses[i % 5] for i in range(n)],  # an empty name is not allowed
    }
    glb = MeshContent(prims, PropertyTable("building", columns)).to_glb(GlbOptions())
    doc, _ = parse_glb(glb)
    meta = doc["extensions"]["EXT_structural_metadata"]
    props = meta["schema"]["classes"]["building"]["properties"]
    assert {k: v["type"] for k, v in props.items()} == {"use": "ENUM", "street": "ENUM", "code": "STRING",
                                                        "with_null": "STRING", "with_empty": "STRING"}
    enums = meta["schema"]["enums"]
    assert enums[props["use"]["enumType"]]["valueType"] == "UINT8"
    assert [v["name"] for v in enums[props["use"]["enumType"]]["values"]] == sorted(uses)
    assert enums[props["street"]["enumType"]]["valueType"] == "UINT16"
    table = meta["propertyTables"][0]["properties"]
    assert doc["bufferViews"][table["use"]["values"]]["byteLength"] == n
    assert doc["bufferViews"][table["street"]["values"]]["byteLength"] == 2 * n
    back = read_glb(glb)["properties"]
    assert back == {**columns, "with_null": ["" if v is None else v for v in columns["with_null"]]}  # noData ""
    (tmp_path / "enums.glb").write_bytes(glb)
    plain = tmp_path / "plain" / "enums.glb"
    plain.parent.mkdir()
    plain.write_bytes(MeshContent(prims, PropertyTable("building", columns)).to_glb(GlbOptions(compression="none")))
    assert check_feature_metadata(plain) == []
    assert_valid(tmp_path, allow_warnings=False)  # both files; the metadata check too (meshopt: decompressed)


def test_meshopt_stores_vertices_that_encode_alike_once():
    """Flat-shaded faces in one plane repeat their shared corners (own vertices per triangle, as LOD2 roofs are
    written); under meshopt the corners whose every stored value agrees (grid position, int8 normal, UV, feature ID)
    are stored once, and each corner still decodes to its place and feature. Corners with another normal or feature
    stay apart."""
    quad = np.array([[0.0, 0, 5], [10, 0, 5], [10, 10, 5], [0, 10, 5]])
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    corners = np.vstack([quad[t] for t in tris] + [quad[t] + (20, 0, 0) for t in tris])  # 2 quads, 12 corners
    up = np.tile([0.0, 0.0, 1.0], (12, 1))
    up[6:] = [0.0, 0.6, 0.8]  # the second quad is tilted: its own normal
    fids = np.repeat([0, 1], 6)
    fids[3:6] = 2  # the second triangle of the first quad is another feature: its corners cannot merge
    uv = (corners[:, :2] - corners[:, :2].min(axis=0)) / 30.0
    prim = Primitive(corners, np.arange(12).reshape(-1, 3), up, texcoords=uv, feature_ids=fids)
    content = MeshContent([prim])
    for compression, stored in (("none", 12), ("draco", None), ("meshopt", 10)):
        glb = read_glb(content.to_glb(GlbOptions(compression=compression)))
        got = glb["primitives"][0]
        if stored is not None:
            assert len(got["positions"]) == stored
        assert len(got["indices"]) == 4
        # every triangle decodes with its corners' places, normals and feature IDs (in any order)

        def triangles(pos, nrm, ids, tri):
            return sorted(tuple(sorted(zip(map(tuple, np.rint(pos[t] * 100).astype(int).tolist()),
                                           map(tuple, np.rint(nrm[t] * 50).astype(int).tolist()), ids[t].tolist())))
                          for t in tri)

        assert triangles(got["positions"], got["normals"], got["feature_ids"], got["indices"]) == \
            triangles(corners, up, fids, np.arange(12).reshape(-1, 3))


@pytest.mark.parametrize("compression", ["none", "meshopt", "draco"])
def test_equal_columns_share_one_buffer_view_and_read_back_whole(compression):
    n = 300
    codes = [f"1402130030010{i:04d}" for i in range(n)]
    table = PropertyTable("building", {"id": codes, "code": list(codes), "height": np.linspace(3.0, 90.0, n),
                                       "floors": np.arange(n) % 30 + 1, "name": [f"楼{i}" for i in range(n)]})
    pos = np.repeat(np.arange(n, dtype=float), 3)[:, None] * (5, 0, 0) + np.tile([[0, 0, 0], [1, 0, 0], [0, 1, 0]],
                                                                                 (n, 1))
    content = MeshContent([Primitive(pos, np.arange(3 * n).reshape(-1, 3), feature_ids=np.repeat(np.arange(n), 3))],
                          table)
    glb = read_glb(content.to_glb(GlbOptions(compression=compression)))
    entries = glb["json"]["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["properties"]
    assert entries["id"] == entries["code"]  # the same values and offsets views
    views = [v for e in entries.values() for k, v in e.items() if k in ("values", "stringOffsets")]
    assert len(views) == len(set(views)) + 2
    props = glb["properties"]
    assert props["id"] == codes and props["code"] == codes and props["name"] == [f"楼{i}" for i in range(n)]
    assert np.array_equal(props["height"], np.linspace(3.0, 90.0, n))
    assert np.array_equal(props["floors"], np.arange(n) % 30 + 1)
