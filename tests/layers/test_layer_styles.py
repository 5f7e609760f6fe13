"""Layer styles (thematic maps), scenes and the document file beside the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layers.errors import LayerInputError
from layers.store import LayerStore


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LayerStore:
    from tests.support.many_layers import write_small_layers

    folder = tmp_path_factory.mktemp("styles")
    with LayerStore(folder / "city.duckdb") as s:
        write_small_layers(s, folder)
    s = LayerStore(folder / "city.duckdb", read_only=True).open()
    yield s
    s.close()


def test_breaks_agree_with_numpy_and_jenkspy() -> None:
    import jenkspy

    from layers.styles import breaks

    v = np.random.default_rng(3).gamma(2.0, 10.0, 1500)
    assert breaks(v, "equal_interval", 4) == pytest.approx(np.linspace(v.min(), v.max(), 5).tolist())
    assert breaks(v, "quantile", 5) == pytest.approx(np.quantile(v, np.linspace(0, 1, 6)).tolist())
    assert breaks(v, "jenks", 5) == pytest.approx(jenkspy.jenks_breaks(v, n_classes=5))
    assert breaks(np.array([1.0] * 9 + [2.0]), "quantile", 4) == [1.0, 2.0]  # equal edges merged
    with pytest.raises(LayerInputError, match="classes=1"):
        breaks(v, "quantile", 1)
    with pytest.raises(LayerInputError, match="no numeric values"):
        breaks(np.array([np.nan]), "quantile", 3)


def test_class_of_is_half_open_with_the_last_class_closed() -> None:
    from layers.styles import LayerStyle, StyleClass

    s = LayerStyle(layer="x", kind="graduated", field="h",
                   classes=[StyleClass(min=0, max=10, color=[1, 2, 3]), StyleClass(min=10, max=20, color=[4, 5, 6])])
    assert s.class_of(0).color == [1, 2, 3, 255] and s.class_of(10).color == [4, 5, 6, 255]
    assert s.class_of(20).color == [4, 5, 6, 255] and s.class_of(20.01) is None and s.class_of(None) is None
    with pytest.raises(ValueError, match="needs a field"):
        LayerStyle(layer="x", kind="unique")
    with pytest.raises(ValueError, match="colour"):
        StyleClass(color=[300, 0, 0])


def test_make_style_from_the_store(store: LayerStore) -> None:
    from layers.styles import make_style, style_for
    from tests.support.many_layers import COUNTS

    unique = make_style(store, "points", "unique", field="pid")
    assert len(unique.classes) == 24 and len({tuple(c.color) for c in unique.classes}) == 24  # MAX_UNIQUE
    grad = make_style(store, "points", "graduated", field="value", method="equal_interval", n_classes=4)
    values = store.query("points")["value"].to_numpy()
    assert [c.min for c in grad.classes] + [grad.classes[-1].max] == pytest.approx(
        np.linspace(values.min(), values.max(), 5).tolist())
    assert all(grad.class_of(v) is not None for v in values)
    chor = make_style(store, "divisions", "choropleth", source="points")
    assert sorted(chor.choropleth.values.values()) == sorted(map(float, COUNTS))
    assert make_style(store, "points", "heatmap", field="value").heatmap.weight_field == "value"
    with pytest.raises(LayerInputError, match="not numeric"):
        make_style(store, "points", "graduated", field="pid")
    with pytest.raises(LayerInputError, match="needs points"):
        make_style(store, "divisions", "heatmap")
    with pytest.raises(LayerInputError, match="not a field"):
        make_style(store, "points", "unique", field="nope")
    info = store.info("points")
    default = style_for(None, info)
    assert default.kind == "single" and default.default_color[:3] == style_for(None, info).default_color[:3]


def test_documents_styles_scenes_annotations(tmp_path: Path, store: LayerStore) -> None:
    from layers.docstore import DocumentNotFoundError, DocumentStore, docs_path
    from layers.scenes import Scene, load_scene, save_scene
    from layers.styles import make_style, style_for

    assert docs_path("/a/city.duckdb") == Path("/a/city.docs.sqlite")
    with DocumentStore(tmp_path / "d.sqlite") as docs:
        style = make_style(store, "points", "graduated", field="value")
        docs.put_style("points", style.to_dict(), "k1")
        assert style_for(docs, store.info("points")).classes == style.classes
        assert list(docs.styles(["points", "divisions"])) == ["points"]
        docs.delete_style("points")
        with pytest.raises(DocumentNotFoundError):
            docs.delete_style("points")
        saved = save_scene(docs, {"name": "plan-a", "title": "规划", "layers": [{"id": "layer:points", "opacity": 0.5}],
                                  "camera": {"longitude": 113.3, "latitude": 40.09, "zoom": 15}}, owner="k1")
        assert load_scene(docs, "plan-a") == saved and docs.scene_owner("plan-a") == "k1"
        with pytest.raises(LayerInputError, match="not a valid scene"):
            save_scene(docs, {"name": "Bad Name"})
        with pytest.raises(ValueError):
            Scene(name="x", camera={"longitude": 500, "latitude": 0, "zoom": 1})
        a = docs.add_annotation("k1", {"lon": 1.0, "lat": 2.0, "height": 3.0, "text": "批注"})
        assert docs.annotations("k1") == [a] and docs.annotations("k2") == []
        with pytest.raises(DocumentNotFoundError):
            docs.delete_annotation("k2", a["id"])
        docs.delete_annotation("k1", a["id"])
        assert docs.annotations("k1") == []
