"""Layer styles and thematic maps (专题制图): the style model stored with a layer, and classification from the store.

A `LayerStyle` says how the viewer draws a layer: one colour (`single`), a colour per value (`unique`), classes of a
numeric field by colour (`graduated`) or by point size / line width (`graduated_size`), a statistic of another layer
per division (`choropleth`, from `LayerStore.stats`) or the density of points (`heatmap`). It is a JSON document
stored in the store's document file (`layers.docstore`); the shape is written down in docs/viewer.md ("Thematic
maps") for other generators (MapLibre style documents). `make_style` builds one from the data:

    >>> from layers.store import LayerStore
    >>> from layers.styles import make_style
    >>> with LayerStore("city.duckdb", read_only=True) as store:  # doctest: +SKIP
    ...     style = make_style(store, "buildings", "graduated", field="height", method="jenks", n_classes=5)
    ...     [c.label for c in style.classes]

Class breaks: equal intervals; quantiles (DuckDB `quantile_cont` over the field); natural breaks (Fisher-Jenks,
jenkspy, on at most 2,000 values sampled with a fixed seed, since the algorithm is quadratic in the values).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from layers.errors import LayerInputError

if TYPE_CHECKING:
    from layers.docstore import DocumentStore
    from layers.models import LayerInfo
    from layers.store import LayerStore

StyleKind = Literal["single", "unique", "graduated", "graduated_size", "choropleth", "heatmap"]
Method = Literal["equal_interval", "quantile", "jenks", "manual"]
Color = list[int]

STYLE_VERSION = 1
MAX_UNIQUE = 24  # more distinct values than this: the rest take the default colour
JENKS_SAMPLE = 2000
# the viewer's default colours, one per layer, picked by name (stable whoever asks)
PALETTE: list[Color] = [[230, 85, 13], [49, 130, 189], [49, 163, 84], [117, 107, 177], [222, 45, 38],
                        [253, 174, 107], [99, 99, 99], [158, 202, 225], [161, 217, 155], [188, 189, 220],
                        [214, 97, 107], [140, 86, 75], [231, 186, 82], [23, 190, 207]]
# sequential ramps (ColorBrewer-like, low to high) and a qualitative one for unique values
RAMPS: dict[str, list[Color]] = {
    "YlOrRd": [[255, 255, 178], [254, 204, 92], [253, 141, 60], [240, 59, 32], [189, 0, 38]],
    "Blues": [[239, 243, 255], [189, 215, 231], [107, 174, 214], [49, 130, 189], [8, 81, 156]],
    "Greens": [[237, 248, 233], [186, 228, 179], [116, 196, 118], [49, 163, 84], [0, 109, 44]],
    "Purples": [[242, 240, 247], [203, 201, 226], [158, 154, 200], [117, 107, 177], [84, 39, 143]],
    "Heat": [[0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0]],
}
QUALITATIVE: list[Color] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                            [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
                            [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
                            [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229],
                            [57, 59, 121], [99, 121, 57], [140, 109, 49], [132, 60, 57]]


def _rgba(v: list[int]) -> list[int]:
    if len(v) not in (3, 4) or any(not isinstance(c, int) or not 0 <= c <= 255 for c in v):
        raise ValueError(f"colour {v!r} is not [r, g, b] or [r, g, b, a] with 0-255 integers")
    return list(v) + ([255] if len(v) == 3 else [])


class StyleClass(BaseModel):
    """One legend entry: an exact `value` (unique) or a range `[min, max)` (graduated; the last class is closed)."""

    value: str | float | int | bool | None = None
    min: float | None = None
    max: float | None = None
    color: Color
    size: float | None = None  # pixels: point radius or line width (graduated_size)
    label: str = ""

    _rgba = field_validator("color")(classmethod(lambda cls, v: _rgba(v)))


class Choropleth(BaseModel):
    """Where a choropleth's values come from: `agg` of `source` (its `source_field`) per division feature."""

    source: str
    agg: Literal["count", "sum", "mean", "min", "max"] = "count"
    source_field: str | None = None
    values: dict[str, float | None] = Field(default_factory=dict)  # division fid (as text) -> value


class Heatmap(BaseModel):
    """Density of points: kernel radius in pixels, an optional weight field, colours low to high."""

    radius_px: float = Field(30.0, gt=0, le=500)
    intensity: float = Field(1.0, gt=0, le=100)
    weight_field: str | None = None
    colors: list[Color] = Field(default_factory=lambda: [c + [255] for c in RAMPS["Heat"]])


class LayerStyle(BaseModel):
    """How a layer is drawn (the document stored with the layer; see docs/viewer.md, "Thematic maps")."""

    version: int = STYLE_VERSION
    layer: str
    kind: StyleKind = "single"
    title: str = ""
    field: str | None = None
    method: Method | None = None
    classes: list[StyleClass] = Field(default_factory=list)
    default_color: Color = Field(default_factory=lambda: [160, 160, 160, 200])
    stroke_color: Color = Field(default_factory=lambda: [255, 255, 255, 255])
    stroke_width: float = Field(1.0, ge=0, le=50)
    point_size: float = Field(4.0, gt=0, le=200)
    opacity: float = Field(1.0, ge=0, le=1)
    extrude_field: str | None = None
    choropleth: Choropleth | None = None
    heatmap: Heatmap | None = None
    updated_at: str | None = None
    updated_by: str | None = None

    _rgba = field_validator("default_color", "stroke_color")(classmethod(lambda cls, v: _rgba(v)))

    @model_validator(mode="after")
    def _consistent(self) -> LayerStyle:
        if self.kind in ("unique", "graduated", "graduated_size") and not self.field:
            raise ValueError(f"a {self.kind} style needs a field")
        if self.kind == "choropleth" and self.choropleth is None:
            raise ValueError("a choropleth style needs its `choropleth` source (layer, agg, values)")
        if self.kind == "heatmap" and self.heatmap is None:
            self.heatmap = Heatmap()
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def class_of(self, value: Any) -> StyleClass | None:
        """The class a value falls in (unique: equal value; graduated: [min, max), the last class closed)."""
        if value is None:
            return None
        if self.kind == "unique":
            return next((c for c in self.classes if c.value == value or str(c.value) == str(value)), None)
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        last = len(self.classes) - 1
        for i, c in enumerate(self.classes):
            lo = -math.inf if c.min is None else c.min
            hi = math.inf if c.max is None else c.max
            if lo <= v < hi or (i == last and v == hi):
                return c
        return None


def default_color(name: str) -> Color:
    """The viewer's colour of a layer without a style: a palette colour picked by the layer's name."""
    return list(PALETTE[int(hashlib.blake2b(name.encode(), digest_size=2).hexdigest(), 16) % len(PALETTE)])


def default_style(info: LayerInfo) -> LayerStyle:
    """The style the viewer draws a layer with when none is stored: one colour, translucent fill for polygons."""
    polygon = "POLYGON" in info.geometry_type.upper()
    color = default_color(info.name)
    return LayerStyle(layer=info.name, kind="single", default_color=color + [40 if polygon else 220],
                      stroke_color=color + [255], stroke_width=1 if polygon else 2)


def style_for(docs: DocumentStore | None, info: LayerInfo) -> LayerStyle:
    """The style of a layer: the stored one, else the default (`default_style`). This is the one function a style
    generator (e.g. MapLibre style documents for other systems) reads."""
    doc = docs.style(info.name) if docs is not None else None
    return LayerStyle.model_validate(doc) if doc else default_style(info)


# ---------------------------------------------------------------------------------------------- classification
def breaks(values: np.ndarray, method: Method, n_classes: int) -> list[float]:
    """Class edges (n_classes + 1 at most, ascending, duplicates merged) of numeric `values` (NaN ignored).

    Args:
        values: (n,) float64.
        method: `equal_interval`, `quantile` or `jenks` (Fisher-Jenks natural breaks).
        n_classes: 2..12.

    Raises:
        LayerInputError: no finite values, a bad method or class count.
    """
    if not 2 <= n_classes <= 12:
        raise LayerInputError(f"classes={n_classes}: pass 2 to 12 classes")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        raise LayerInputError("the field has no numeric values to classify")
    lo, hi = float(v.min()), float(v.max())
    if method == "equal_interval":
        edges = list(np.linspace(lo, hi, n_classes + 1))
    elif method == "quantile":
        edges = list(np.quantile(v, np.linspace(0, 1, n_classes + 1)))
    elif method == "jenks":
        import jenkspy

        if v.size > JENKS_SAMPLE:
            rng = np.random.default_rng(19)
            v = np.concatenate([[lo, hi], rng.choice(v, JENKS_SAMPLE - 2, replace=False)])
        k = min(n_classes, len(np.unique(v)) - 1)
        edges = [lo, hi] if k < 2 else [float(x) for x in jenkspy.jenks_breaks(v, n_classes=k)]
    else:
        raise LayerInputError(f"method {method!r} is not equal_interval, quantile or jenks")
    out: list[float] = []
    for e in edges:
        e = float(e)
        if not out or e > out[-1]:
            out.append(e)
    return out if len(out) > 1 else [lo, hi]


def ramp_colors(ramp: str, n: int, alpha: int = 200) -> list[Color]:
    """`n` colours along a named ramp (`RAMPS`), linearly interpolated, low to high."""
    stops = RAMPS.get(ramp)
    if stops is None:
        raise LayerInputError(f"ramp {ramp!r} is not one of {', '.join(RAMPS)}")
    a = np.asarray(stops, dtype=np.float64)
    pos = np.linspace(0, len(stops) - 1, max(n, 1))
    out = []
    for p in pos:
        i = min(int(p), len(stops) - 2)
        f = p - i
        out.append([int(round(x)) for x in a[i] * (1 - f) + a[i + 1] * f] + [alpha])
    return out


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def graduated_classes(edges: list[float], colors: list[Color], sizes: list[float] | None = None
                      ) -> list[StyleClass]:
    return [StyleClass(min=edges[i], max=edges[i + 1], color=colors[i],
                       size=None if sizes is None else sizes[i], label=f"{_fmt(edges[i])} - {_fmt(edges[i + 1])}")
            for i in range(len(edges) - 1)]


def _field(info: LayerInfo, field: str | None, numeric: bool) -> str:
    from layers.queries import _NUMERIC

    if not field:
        raise LayerInputError(f"pass field=<one of {', '.join(info.field_names())}>")
    f = next((x for x in info.fields if x.name.casefold() == field.casefold()), None)
    if f is None:
        raise LayerInputError(f"{field!r} is not a field of {info.name!r}; fields: {', '.join(info.field_names())}")
    if numeric and not f.type.upper().startswith(_NUMERIC):
        raise LayerInputError(f"field {f.name!r} of {info.name!r} is {f.type}, not numeric; graduated styles need "
                              f"numbers (use kind=unique for categories)")
    return f.name


def _numbers(store: LayerStore, name: str, field: str) -> np.ndarray:
    from layers.store import quote

    cur = store.cursor()
    try:
        rows = cur.execute(f"SELECT {quote(field)}::DOUBLE FROM {store.table_name(name)} "
                           f"WHERE {quote(field)} IS NOT NULL").fetchnumpy()
    finally:
        cur.close()
    return next(iter(rows.values())).astype(np.float64) if rows else np.empty(0)


def make_style(store: LayerStore, name: str, kind: StyleKind, *, field: str | None = None,
               method: Method = "quantile", n_classes: int = 5, ramp: str = "YlOrRd",
               source: str | None = None, agg: str = "count", source_field: str | None = None,
               edges: list[float] | None = None, title: str = "") -> LayerStyle:
    """A thematic style of layer `name` computed from its data in the store.

    Args:
        store: an open `LayerStore`.
        name: the layer to style.
        kind: `single`, `unique`, `graduated`, `graduated_size`, `choropleth` or `heatmap`.
        field: the attribute (unique, graduated*, heatmap weight).
        method: class breaks (`equal_interval`, `quantile`, `jenks`); `manual` with `edges`.
        n_classes: number of classes (2..12).
        ramp: colour ramp (`RAMPS`).
        source, agg, source_field: choropleth: the statistic `agg` of layer `source` (field `source_field`) per
            feature of `name` (the divisions), as `LayerStore.stats(source, by=name, ...)` gives it.
        edges: class edges for `method="manual"`.
        title: the legend's title.

    Raises:
        LayerInputError: a field that is not there or not numeric, a non-point heat map, no values.
    """
    info = store.info(name)
    polygon = "POLYGON" in info.geometry_type.upper()
    base = default_style(info)
    common: dict[str, Any] = {"layer": name, "kind": kind, "title": title, "stroke_color": base.stroke_color,
                              "stroke_width": base.stroke_width}
    if kind == "single":
        return LayerStyle(**common, default_color=base.default_color)
    if kind == "heatmap":
        if "POINT" not in info.geometry_type.upper():
            raise LayerInputError(f"a heat map needs points; {name!r} has {info.geometry_type}")
        weight = _field(info, field, numeric=True) if field else None
        return LayerStyle(**common, heatmap=Heatmap(weight_field=weight))
    alpha = 170 if polygon else 230
    if kind == "unique":
        from layers.store import quote

        col = _field(info, field, numeric=False)
        cur = store.cursor()
        try:
            rows = cur.execute(f"SELECT {quote(col)}, count(*) AS n FROM {store.table_name(name)} "
                               f"WHERE {quote(col)} IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?",
                               [MAX_UNIQUE]).fetchall()
        finally:
            cur.close()
        if not rows:
            raise LayerInputError(f"field {col!r} of {name!r} has no values")
        values = sorted((r[0] for r in rows), key=lambda x: (str(type(x)), x))
        classes = [StyleClass(value=v if isinstance(v, (str, int, float, bool)) else str(v),
                              color=QUALITATIVE[i % len(QUALITATIVE)] + [alpha], label=str(v))
                   for i, v in enumerate(values)]
        return LayerStyle(**common, field=col, classes=classes, default_color=[160, 160, 160, alpha // 2])
    values_by_fid: dict[str, float | None] | None = None
    if kind == "choropleth":
        if not polygon:
            raise LayerInputError(f"a choropleth colours divisions (polygons); {name!r} has {info.geometry_type}")
        if not source:
            raise LayerInputError("a choropleth needs source=<the layer to count or sum per division>")
        stats = store.stats(source, name, field=source_field, agg=agg)
        values_by_fid = {str(r.division_fid): r.value for r in stats.rows}
        data = np.array([v for v in values_by_fid.values() if v is not None], dtype=np.float64)
        col = None
    elif kind in ("graduated", "graduated_size"):
        col = _field(info, field, numeric=True)
        data = _numbers(store, name, col)
    else:
        raise LayerInputError(f"kind {kind!r} is not one of single, unique, graduated, graduated_size, choropleth, "
                              f"heatmap")
    if method == "manual":
        if not edges or len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise LayerInputError(f"manual edges {edges!r} must be at least two ascending numbers")
        cuts = [float(e) for e in edges]
    else:
        cuts = breaks(data, method, n_classes)
    n = len(cuts) - 1
    colors = ramp_colors(ramp, n, alpha)
    sizes = None
    if kind == "graduated_size":
        sizes = [float(s) for s in np.linspace(3, 15 if "POINT" in info.geometry_type.upper() else 8, n).round(1)]
        colors = [base.stroke_color[:3] + [alpha]] * n
    chor = None if kind != "choropleth" else Choropleth(source=source or "", agg=agg,  # type: ignore[arg-type]
                                                          source_field=source_field, values=values_by_fid or {})
    return LayerStyle(**common, field=col, method=method, classes=graduated_classes(cuts, colors, sizes),
                      default_color=[160, 160, 160, alpha // 2], choropleth=chor)


__all__ = ["PALETTE", "RAMPS", "Choropleth", "Heatmap", "LayerStyle", "StyleClass", "breaks", "default_color",
           "default_style", "make_style", "ramp_colors", "style_for"]
