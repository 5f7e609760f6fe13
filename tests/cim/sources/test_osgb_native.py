"""The native `.osgb` reader against the osgconv reader, file by file, on real and generated productions."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest

from cim.errors import InputError, MissingToolError
from cim.sources import osgb_binary
from cim.sources.osgb import OsgbReaderWarning, OsgFile, has_osgconv, read_osgb, read_osgb_native, run_osgconv
from cim.sources.osgb_binary import OsgbFormatError
from tests.support.paths import SHARED_DATA

ZHONGSHAN = SHARED_DATA / "oblique_osgb" / "zhongshan"
needs_osgconv = pytest.mark.skipif(not has_osgconv(), reason="osgconv missing: apt-get install -y openscenegraph")


def _real_files() -> list[Path]:
    if not (ZHONGSHAN / "Data").is_dir():
        pytest.skip(f"{ZHONGSHAN} is absent (real test data lives in ../shared/data)")
    return sorted((ZHONGSHAN / "Data").rglob("*.osgb"))


def assert_same(native: OsgFile, ref: OsgFile, *, same_image_bytes: bool = True) -> None:
    """Same nodes, ranges, child names, arrays (float32-exact), indices, textures and images."""
    assert len(native.nodes) == len(ref.nodes)
    for a, b in zip(native.nodes, ref.nodes):
        # the .osg text carries float32 values with 9 digits: equal once back in float32
        np.testing.assert_array_equal(a.center.astype(np.float32), b.center.astype(np.float32))
        assert np.float32(a.radius) == np.float32(b.radius)
        assert a.range_mode == b.range_mode
        np.testing.assert_array_equal(np.asarray(a.ranges, np.float32).reshape(-1, 2),
                                      np.asarray(b.ranges, np.float32).reshape(-1, 2))
        assert a.child_files == b.child_files
        assert len(a.geometries) == len(b.geometries)
        for ga, gb in zip(a.geometries, b.geometries):
            assert ga.positions.dtype == np.float64 and ga.positions.shape == gb.positions.shape
            np.testing.assert_array_equal(ga.positions.astype(np.float32), gb.positions.astype(np.float32))
            np.testing.assert_array_equal(ga.indices, gb.indices)
            assert (ga.texcoords is None) == (gb.texcoords is None)
            if ga.texcoords is not None:
                np.testing.assert_array_equal(ga.texcoords.astype(np.float32), gb.texcoords.astype(np.float32))
            assert (ga.texture, ga.texture_name) == (gb.texture, gb.texture_name)
    assert [m for _, m in native.images] == [m for _, m in ref.images]
    if same_image_bytes:
        assert [d for d, _ in native.images] == [d for d, _ in ref.images]


# ------------------------------------------------------------------------------------------ without osgconv
def test_native_reader_needs_no_osgconv(monkeypatch, tmp_path):
    files = _real_files()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CIM_OSGCONV", raising=False)
    monkeypatch.delenv("CIM_OSGB_READER", raising=False)
    root = read_osgb(ZHONGSHAN / "Data" / "Tile_+000_+012" / "Tile_+000_+012_L15_0u.osgb")
    node = root.nodes[0]
    assert node.child_files == ["Tile_+000_+012_L16_0uu.osgb"] and node.range_mode == "PIXEL_SIZE_ON_SCREEN"
    assert root.triangle_count() > 0 and root.images[0][1] == "image/jpeg"
    assert all(g.indices.max() < len(g.positions) for g in node.geometries)
    assert sum(read_osgb(f).triangle_count() for f in files) > 10 * root.triangle_count()
    monkeypatch.setenv("CIM_OSGB_READER", "osgconv")
    with pytest.raises(MissingToolError, match="openscenegraph"):
        read_osgb(files[0])
    monkeypatch.setenv("CIM_OSGB_READER", "osgb2")
    with pytest.raises(InputError, match="'native' or 'osgconv'"):
        read_osgb(files[0])


def test_errors_name_file_class_property_and_offset(tmp_path):
    f = _real_files()[0]
    data = f.read_bytes()
    bad = tmp_path / "not.osgb"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(OsgbFormatError, match=r"not\.osgb.*at byte 0.*magic"):
        read_osgb_native(bad)
    # an unknown class, same length as osg::Material: its name and the offset of its class-name string
    at = data.index(b"osg::Material")
    renamed = tmp_path / "renamed.osgb"
    renamed.write_bytes(data.replace(b"osg::Material", b"osg::Materiel", 1))
    with pytest.raises(OsgbFormatError, match=rf"osg::Materiel at byte {at - 4} .*class not supported"):
        read_osgb_native(renamed)
    # a truncated file fails inside a property, not with a struct or numpy error
    cut = tmp_path / "cut.osgb"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(OsgbFormatError, match=r"cut\.osgb: .*osg::\w+\.[\w:, ]+ at byte \d+"):
        read_osgb_native(cut)


# ---------------------------------------------------------------------------------- against the osgconv reader
@needs_osgconv
def test_real_production_reads_the_same_both_ways():
    files = _real_files()
    assert len(files) == 35
    for f in files:
        assert_same(read_osgb(f, reader="native"), read_osgb(f, reader="osgconv"))


@needs_osgconv
def test_generated_sample_production_reads_the_same_both_ways(tmp_path):
    from cim import sample

    city = sample.generate(tmp_path / "city", buildings=20, seed=5)
    prod = sample.write_oblique(city, tmp_path / "oblique", tile_size=500, fmt="osgb")
    files = sorted((prod / "Data").rglob("*.osgb"))
    assert files and all(f.read_bytes()[12:16] == b"\xa1\0\0\0" for f in files)  # osgconv 3.6 writes version 161
    for f in files:
        native = read_osgb(f, reader="native")
        assert native.triangle_count() > 0 and native.images
        assert_same(native, read_osgb(f, reader="osgconv"))


OSG_SCENE = """Group {
  num_children 2
  PagedLOD {
    Center 1.25 2.5 3.75
    Radius 40.5
    RangeMode PIXEL_SIZE_ON_SCREEN
    RangeList 2 {
      0 300
      300 1e+30
    }
    FileNameList 2 {
      ""
      child.osgb
    }
    num_children 1
    MatrixTransform {
      referenceFrame RELATIVE
      Matrix {
        2 0 0 0
        0 2 0 0
        0 0 2 0
        100.5 200.25 -3 1
      }
      num_children 1
      Geode {
        num_drawables 1
        Geometry {
          StateSet {
            textureUnit 0 {
              GL_TEXTURE_2D ON
              Texture2D {
                file "tex.png"
              }
            }
          }
          PrimitiveSets 2
          {
            DrawArrays TRIANGLES 0 3
            DrawElementsUShort TRIANGLE_STRIP 4
            {
              0 1 2 3
            }
          }
          VertexArray Vec3Array 4
          {
            0 0 0
            1 0 0
            0 1 0
            1 1 0.5
          }
          TexCoordArray 0 Vec2Array 4
          {
            0 0
            1 0
            0 1
            1 1
          }
        }
      }
    }
  }
  Geode {
    num_drawables 1
    Geometry {
      PrimitiveSets 1
      {
        DrawElementsUInt TRIANGLE_FAN 4
        {
          0 1 2 3
        }
      }
      VertexArray Vec3Array 4
      {
        10 10 0
        11 10 0
        11 11 0
        10 11 0.25
      }
    }
  }
}
"""


@pytest.fixture
def scene_osg(tmp_path):
    from PIL import Image

    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(tmp_path / "tex.png")
    (tmp_path / "scene.osg").write_text(OSG_SCENE)
    return tmp_path / "scene.osg"


@needs_osgconv
def test_transform_draw_arrays_strips_fans_and_external_texture(scene_osg):
    from PIL import Image

    f = scene_osg.with_name("external.osgb")
    run_osgconv(scene_osg, f, "WriteImageHint=UseExternal")
    native = read_osgb(f, reader="native")
    # osgconv re-encodes external textures as it writes them out: compare pixels, not bytes
    assert_same(native, read_osgb(f, reader="osgconv"), same_image_bytes=False)
    assert native.images[0][0] == (scene_osg.parent / "tex.png").read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(native.images[0][0])))
    assert pixels.shape == (4, 4, 3)
    lod, loose = native.nodes[1], native.nodes[0]
    assert lod.child_files == ["child.osgb"] and lod.ranges == [(300.0, float(np.float32(1e30)))]
    np.testing.assert_array_equal(lod.center, [1.25, 2.5, 3.75])
    g = lod.geometries[0]
    np.testing.assert_array_equal(g.positions[3], [102.5, 202.25, -2.0])  # p @ M with row vectors
    assert g.indices.tolist() == [[0, 1, 2], [0, 1, 2], [2, 1, 3]]
    assert loose.geometries[0].indices.tolist() == [[0, 1, 2], [0, 2, 3]] and loose.child_files == []


@needs_osgconv
def test_raw_pixel_data_becomes_a_png_with_the_same_pixels(scene_osg):
    from PIL import Image

    f = scene_osg.with_name("inline.osgb")
    run_osgconv(scene_osg, f, "WriteImageHint=IncludeData")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OsgbReaderWarning)
        native = read_osgb(f)
    ref = read_osgb(f, reader="osgconv")
    assert_same(native, ref, same_image_bytes=False)
    (png, mime), (written, _) = native.images[0], ref.images[0]
    assert mime == "image/png"
    source = np.asarray(Image.open(scene_osg.parent / "tex.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), source)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(written))), source)


@needs_osgconv
def test_unknown_class_falls_back_to_osgconv(monkeypatch):
    f = _real_files()[0]
    monkeypatch.delitem(osgb_binary._CLASSES, "osg::Material")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = read_osgb(f)
    assert any(issubclass(w.category, OsgbReaderWarning) and "osg::Material" in str(w.message) for w in caught)
    monkeypatch.undo()
    assert_same(read_osgb(f), got)
