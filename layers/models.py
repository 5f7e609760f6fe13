"""Result objects of the layer store: catalogue records and reports, each with `to_dict()` for JSON output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from layers.types import STORE_CRS, LibraryLevel, SecurityLevel


class _Model(BaseModel):
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO 8601 strings)."""
        return self.model_dump(mode="json")


class FieldInfo(_Model):
    """One attribute column of a layer: its name and DuckDB type."""

    name: str
    type: str


class VersionInfo(_Model):
    """One version of a layer, as `history` lists it."""

    version: int
    operation: str  # "import" or "rollback"
    note: str = ""
    created_at: datetime
    source: str
    source_format: str
    source_crs: str
    geometry_type: str
    feature_count: int
    extent: tuple[float, float, float, float] | None
    fields: list[FieldInfo]
    repaired: int = 0
    rejected: int = 0
    current: bool = False


class LayerInfo(_Model):
    """Catalogue record of a layer (its current version's facts included)."""

    name: str
    title: str
    theme: str
    theme_title: str
    level: LibraryLevel
    department: str
    security: SecurityLevel
    version: int
    crs: str = STORE_CRS
    source: str
    source_format: str
    source_crs: str
    geometry_type: str
    feature_count: int
    extent: tuple[float, float, float, float] | None
    fields: list[FieldInfo]
    key_field: str
    created_at: datetime
    updated_at: datetime
    dropped: bool = False

    def field_names(self) -> list[str]:
        """Attribute names in table order."""
        return [f.name for f in self.fields]


class Rejection(_Model):
    """A feature an import could not keep."""

    feature: str  # the source feature id, or the 1-based row number when the source has none
    reason: str


class ImportReport(_Model):
    """What an import did."""

    layer: str
    version: int
    source: str
    source_format: str
    source_crs: str
    geometry_type: str
    feature_count: int
    read: int
    repaired: int
    rejected: list[Rejection] = Field(default_factory=list)
    extent: tuple[float, float, float, float] | None = None
    seconds: float = 0.0


class DiffResult(_Model):
    """Features added, removed and changed from one version of a layer to another, matched by `key`."""

    layer: str
    from_version: int
    to_version: int
    key: str
    added: list[Any]
    removed: list[Any]
    changed: list[Any]
    fields_added: list[str]
    fields_removed: list[str]

    @property
    def counts(self) -> dict[str, int]:
        """Number of added, removed and changed features."""
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed)}


class StatsRow(_Model):
    """Statistics of one division."""

    division_fid: int
    division: str | None
    count: int
    value: float | None


class StatsResult(_Model):
    """Per-division statistics of a layer (features assigned by their representative point)."""

    layer: str
    divisions: str
    label_field: str | None
    field: str | None
    agg: str
    rows: list[StatsRow]


class ExportResult(_Model):
    """A written export."""

    layer: str
    version: int
    path: str
    format: str
    crs: str
    feature_count: int
    encoding: str | None = None  # a Shapefile's (its .cpg)
    renamed: dict[str, str] = Field(default_factory=dict)  # attribute names the format cut (old -> new)
    warnings: list[str] = Field(default_factory=list)


class DropResult(_Model):
    """What `drop` did."""

    layer: str
    purged: bool
    versions: int
    tables_dropped: int


class FeaturePage(_Model):
    """A page of GeoJSON-ready features (for OGC API Features and the like)."""

    layer: str
    number_matched: int
    number_returned: int
    features: list[dict[str, Any]]

    def to_geojson(self) -> dict[str, Any]:
        """A GeoJSON FeatureCollection with the OGC API counts."""
        return {"type": "FeatureCollection", "numberMatched": self.number_matched,
                "numberReturned": self.number_returned, "features": self.features}
