"""The entity sets of SensorThings API 1.1 (Sensing part) and how each maps onto the `sensing` tables.

    >>> ENTITY_SETS["Things"].nav("Datastreams").target
    'Datastreams'

A `Prop` is a property as the standard names it on the wire (`phenomenonTime`) with its kind and column(s); a `Nav`
is a navigation property: to-one through a foreign key on this table (`Datastream.Thing`), to-many through a key on
the target (`Thing.Datastreams`) or through a link table (`Thing.Locations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from layers.sensing.schema import SCHEMA

PropKind = Literal["id", "string", "json", "geojson", "time", "interval", "result", "uom"]

OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
OM_COUNT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CountObservation"
OM_TRUTH = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_TruthObservation"
OM_CATEGORY = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation"
OM_OBSERVATION = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Observation"
OBSERVATION_TYPES = (OM_MEASUREMENT, OM_COUNT, OM_TRUTH, OM_CATEGORY, OM_OBSERVATION)
GEOJSON_TYPES = ("application/geo+json", "application/vnd.geo+json")


@dataclass(frozen=True)
class Prop:
    """A property of an entity set.

    Attributes:
        name: the name on the wire.
        kind: how it is stored and compared.
        column: its column (for an interval, the start); None for a computed property.
        end: the interval's end column.
        required: a create must give it.
        default: the value a create without it stores (a callable default is computed per create).
        writable: clients may set it (computed properties may not).
    """

    name: str
    kind: PropKind
    column: str | None = None
    end: str | None = None
    required: bool = False
    default: Any = None
    writable: bool = True


@dataclass(frozen=True)
class Nav:
    """A navigation property.

    Attributes:
        name: the name on the wire (`Datastreams`, `Thing`).
        target: the target entity set.
        many: a collection (to-many) or one entity (to-one).
        fk: to-one: the column of this table holding the target's id.
        target_fk: to-many: the column of the target table holding this entity's id.
        link: many-to-many: (link table, column holding this id, column holding the target id).
        required: a create must link one (a Datastream's Thing, Sensor and ObservedProperty).
    """

    name: str
    target: str
    many: bool
    fk: str | None = None
    target_fk: str | None = None
    link: tuple[str, str, str] | None = None
    required: bool = False


@dataclass(frozen=True)
class EntitySet:
    """An entity set: its collection name, singular name, table, properties and navigation properties."""

    name: str
    singular: str
    table: str
    props: tuple[Prop, ...]
    navs: tuple[Nav, ...]
    secured: bool = True  # has a `security` column (Observations are visible with their Datastream)
    _props: dict[str, Prop] = field(default_factory=dict, compare=False, repr=False)
    _navs: dict[str, Nav] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._props.update({p.name: p for p in self.props})
        self._navs.update({n.name: n for n in self.navs})

    def prop(self, name: str) -> Prop | None:
        return self._props.get(name)

    def nav(self, name: str) -> Nav | None:
        return self._navs.get(name)

    def visibility(self, alias: str) -> str:
        """SQL that is true for rows of this set the caller may see (one `?` parameter: the visible levels)."""
        if self.secured:
            return f"list_contains(?::VARCHAR[], {alias}.security)"
        return (f"{alias}.datastream_id IN (SELECT id FROM {SCHEMA}.datastreams "
                f"WHERE list_contains(?::VARCHAR[], security))")


def _t(name: str) -> str:
    return f"{SCHEMA}.{name}"


_ID = Prop("id", "id", "id", writable=False)
_NAME = Prop("name", "string", "name", required=True)
_DESCRIPTION = Prop("description", "string", "description", default="")
_PROPERTIES = Prop("properties", "json", "properties")

ENTITY_SETS: dict[str, EntitySet] = {s.name: s for s in (
    EntitySet("Things", "Thing", _t("things"),
              (_ID, _NAME, _DESCRIPTION, _PROPERTIES),
              (Nav("Locations", "Locations", True, link=(_t("thing_locations"), "thing_id", "location_id")),
               Nav("HistoricalLocations", "HistoricalLocations", True, target_fk="thing_id"),
               Nav("Datastreams", "Datastreams", True, target_fk="thing_id"))),
    EntitySet("Locations", "Location", _t("locations"),
              (_ID, _NAME, _DESCRIPTION, Prop("encodingType", "string", "encoding_type", default=GEOJSON_TYPES[0]),
               Prop("location", "geojson", "location", required=True), _PROPERTIES),
              (Nav("Things", "Things", True, link=(_t("thing_locations"), "location_id", "thing_id")),
               Nav("HistoricalLocations", "HistoricalLocations", True,
                   link=(_t("historical_location_locations"), "location_id", "historical_location_id")))),
    EntitySet("HistoricalLocations", "HistoricalLocation", _t("historical_locations"),
              (_ID, Prop("time", "time", "time", required=True)),
              (Nav("Thing", "Things", False, fk="thing_id", required=True),
               Nav("Locations", "Locations", True,
                   link=(_t("historical_location_locations"), "historical_location_id", "location_id")))),
    EntitySet("Datastreams", "Datastream", _t("datastreams"),
              (_ID, _NAME, _DESCRIPTION, Prop("unitOfMeasurement", "uom", "unit_of_measurement", required=True),
               Prop("observationType", "string", "observation_type", default=OM_MEASUREMENT),
               Prop("observedArea", "geojson", None, writable=False),
               Prop("phenomenonTime", "interval", "first_time", "last_time", writable=False),
               Prop("resultTime", "interval", "first_result_time", "last_result_time", writable=False),
               _PROPERTIES),
              (Nav("Thing", "Things", False, fk="thing_id", required=True),
               Nav("Sensor", "Sensors", False, fk="sensor_id", required=True),
               Nav("ObservedProperty", "ObservedProperties", False, fk="observed_property_id", required=True),
               Nav("Observations", "Observations", True, target_fk="datastream_id"))),
    EntitySet("Sensors", "Sensor", _t("sensors"),
              (_ID, _NAME, _DESCRIPTION, Prop("encodingType", "string", "encoding_type", default=""),
               Prop("metadata", "string", "metadata", default=""), _PROPERTIES),
              (Nav("Datastreams", "Datastreams", True, target_fk="sensor_id"),)),
    EntitySet("ObservedProperties", "ObservedProperty", _t("observed_properties"),
              (_ID, _NAME, Prop("definition", "string", "definition", default=""), _DESCRIPTION, _PROPERTIES),
              (Nav("Datastreams", "Datastreams", True, target_fk="observed_property_id"),)),
    EntitySet("Observations", "Observation", _t("observations"),
              (_ID, Prop("phenomenonTime", "interval", "phenomenon_time", "phenomenon_time_end"),
               Prop("resultTime", "time", "result_time"), Prop("result", "result", "result_number", required=True),
               Prop("resultQuality", "json", "result_quality"),
               Prop("validTime", "interval", "valid_time_start", "valid_time_end"),
               Prop("parameters", "json", "parameters")),
              (Nav("Datastream", "Datastreams", False, fk="datastream_id", required=True),
               Nav("FeatureOfInterest", "FeaturesOfInterest", False, fk="feature_id")),
              secured=False),
    EntitySet("FeaturesOfInterest", "FeatureOfInterest", _t("features"),
              (_ID, _NAME, _DESCRIPTION, Prop("encodingType", "string", "encoding_type", default=GEOJSON_TYPES[0]),
               Prop("feature", "geojson", "feature", required=True), _PROPERTIES),
              (Nav("Observations", "Observations", True, target_fk="feature_id"),)),
)}

SINGULAR = {s.singular: s for s in ENTITY_SETS.values()}


def entity_set(name: str) -> EntitySet | None:
    """The entity set of a collection name (`Things`)."""
    return ENTITY_SETS.get(name)


__all__ = ["ENTITY_SETS", "GEOJSON_TYPES", "OBSERVATION_TYPES", "OM_CATEGORY", "OM_COUNT", "OM_MEASUREMENT",
           "OM_OBSERVATION", "OM_TRUTH", "SINGULAR", "EntitySet", "Nav", "Prop", "entity_set"]
