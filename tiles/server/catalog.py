"""The service catalogue: every model, map and layer the server publishes, resolved by name, filtered by caller.

Names resolve through this catalogue only: a model name picks a folder the operator configured (and a file from
that folder's index, `tiles.server.files`), a map name picks a configured COG, a layer name picks a store layer.
Something the caller may not see answers exactly like something that does not exist (404, never 403), and every
access to a confidential layer is written to the audit log (`tiles.server.auth`).

The store is opened read-only for the server's life, so its catalogue cannot change underneath: layer records and
vector tile sources are read once at start. With `ingest` (or `mqtt`) the server opens it read-write instead and is
its only writer: it writes the sensing tables (SensorThings, `layers.sensing`) and nothing else, so the layer
catalogue still cannot change underneath (docs/sensing.md, "Who writes the store").
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layers.docstore import DocumentStore, docs_path
from layers.errors import LayerNotFoundError, StoreLockedError, VersionNotFoundError
from layers.sensing.mqtt import MqttIngest, parse_address
from layers.sensing.store import SensingStore, claim_writer, locked_message, release_writer
from layers.models import LayerInfo
from layers.store import LayerStore, default_store_path
from layers.types import SECURITY_LEVELS
from tiles.errors import ServerConfigError, TileNotFoundError
from tiles.layertree import LayerIndex
from tiles.mvt import MercatorWorkspace, MvtOptions, VectorTileLayer
from tiles.raster import RasterMap, guess_kind
from tiles.server.auth import AccessStore, Principal, access_path
from tiles.server.cache import TileCache
from tiles.server.files import FileCache, FileEntry, index_folder
from tiles.server.settings import ServerSettings, check_name


@dataclass
class Model:
    """A built 3D Tiles model published under `name`."""

    name: str
    root: Path
    security: str
    files: dict[str, Path]
    bounds: tuple[float, float, float, float] | None = None  # lon/lat
    title: str = ""
    crs: str | None = None  # the model's source CRS as `cim build` reports it (a name, EPSG code or WKT)
    dem: Path | None = None  # the DEM it was built on


@dataclass
class ServiceCatalog:
    """Models, maps and layers of one server.

    Cheap to construct; `open()` indexes the model folders, opens the store read-only and the key file.

    Args:
        settings: the server settings.
    """

    settings: ServerSettings
    models: dict[str, Model] = field(default_factory=dict)
    maps: dict[str, RasterMap] = field(default_factory=dict)
    map_security: dict[str, str] = field(default_factory=dict)
    layers: dict[str, LayerInfo] = field(default_factory=dict)
    store: LayerStore | None = None
    access: AccessStore | None = None
    sensing: SensingStore | None = None
    mqtt: MqttIngest | None = None
    docs: DocumentStore | None = None  # styles, scenes, annotations (layers.docstore), beside the store
    _vector: dict[str, VectorTileLayer] = field(default_factory=dict)
    _terrain: dict[str, Any] = field(default_factory=dict)
    _map_datum: dict[str, str] = field(default_factory=dict)
    _versions: dict[tuple[str, int], VectorTileLayer] = field(default_factory=dict)
    _index: LayerIndex | None = None

    def __post_init__(self) -> None:
        self.files = FileCache(self.settings.file_cache_mb * 1024 * 1024, self.settings.gzip_level)
        self.tiles = TileCache(self.settings.tile_cache_mb * 1024 * 1024)
        self.workspace = MercatorWorkspace()
        self._index_lock = threading.Lock()
        self.mvt_options = MvtOptions(max_features=self.settings.mvt_max_features,
                                      simplify_below_zoom=self.settings.mvt_simplify_below_zoom,
                                      maxzoom=self.settings.mvt_maxzoom)

    # ------------------------------------------------------------------ lifecycle
    def _security(self, name: str) -> str:
        level = self.settings.security.get(name, "public")
        if level not in SECURITY_LEVELS:
            raise ServerConfigError(f"security of {name!r} is {level!r}, not one of {', '.join(SECURITY_LEVELS)}")
        return level

    def open(self) -> ServiceCatalog:
        """Index models, find maps, read the store's catalogue, open the key file.

        Raises:
            ServerConfigError: a model folder without tileset.json, a map file that does not exist.
            StoreError: the store cannot be opened read-only (another process writes it).
        """
        s = self.settings
        for name, root in s.models.items():
            check_name(name, "model")
            if not (root / "tileset.json").is_file():
                raise ServerConfigError(f"model {name!r}: {root / 'tileset.json'} does not exist; pass a folder "
                                        f"written by `cim build`")
            report = _read_json(root / "build.json")
            bounds = tuple(report["lonlat_bounds"]) if isinstance(report.get("lonlat_bounds"), list) \
                else _region_bounds(_read_json(root / "tileset.json"))
            dem = (report.get("inputs") or {}).get("dem")
            self.models[name] = Model(name, root.resolve(), self._security(name), index_folder(root),
                                      bounds, title=name, crs=report.get("crs") or None,  # type: ignore[arg-type]
                                      dem=Path(dem) if dem and Path(dem).is_file() else None)
            for kind, key in (("image", "ortho"), ("dem", "dem")):
                src = (report.get("inputs") or {}).get(key)
                if src and Path(src).is_file() and f"{name}_{key}" not in s.maps:
                    self._add_map(f"{name}_{key}", Path(src), kind, self.models[name].security)
                    if key == "dem":  # the model's heights were made ellipsoidal with this datum: so is its terrain
                        cim = (_read_json(root / "tileset.json").get("extras") or {}).get("cim") or {}
                        self._map_datum[f"{name}_{key}"] = cim.get("verticalDatum") or "ellipsoidal"
        for name, path in s.maps.items():
            check_name(name, "map")
            if not path.is_file():
                raise ServerConfigError(f"map {name!r}: {path} does not exist")
            self._add_map(name, path, guess_kind(path), self._security(name))
        unknown = sorted(set(s.security) - set(self.models) - set(self.maps))
        if unknown:
            raise ServerConfigError(f"security given for {unknown}, which are not served models or maps "
                                    f"(models: {sorted(self.models)}, maps: {sorted(self.maps)})")
        store_path = s.store if s.store is not None else default_store_path()
        if s.store is not None or store_path.is_file() or s.writes_store:
            try:
                self.store = LayerStore(store_path, read_only=not s.writes_store, clearance="confidential").open()
            except StoreLockedError as exc:
                raise StoreLockedError(f"{exc}. {locked_message(store_path)}") from exc
            self.sensing = SensingStore(store=self.store, default_top=s.sta_default_top, max_top=s.sta_max_top).open()
            for info in self.store.list():
                self.layers[info.name] = info
            self.docs = DocumentStore(docs_path(store_path)).open()
            # the viewer's layer index (pinyin of every title) takes seconds to make: not in the first page's time
            threading.Thread(target=self.layer_index, name="cim-layer-index", daemon=True).start()
        self.access = AccessStore(s.access_file or access_path(store_path)).open()
        return self

    def start(self, url: str | None = None) -> None:
        """Start what runs beside the requests: record this process as the store's writer, subscribe to the MQTT
        broker (`settings.mqtt`).

        Raises:
            SensingError: the broker cannot be reached.
        """
        s = self.settings
        if self.sensing is None or self.store is None or not s.writes_store:
            return
        claim_writer(self.store.path, url or s.public_url or f"http://{s.host}:{s.port}")
        if s.mqtt:
            host, port = parse_address(s.mqtt)
            self.mqtt = MqttIngest(self.sensing, host, port, client_id=s.mqtt_client_id).start()

    def _add_map(self, name: str, path: Path, kind: str, security: str) -> None:
        self.maps[name] = RasterMap(name, path.resolve(), kind, title=name)  # type: ignore[arg-type]
        self.map_security[name] = security

    def close(self) -> None:
        """Stop MQTT, commit queued observations, close the store, the projected layers and the key file."""
        if self.mqtt is not None:
            self.mqtt.stop()
            self.mqtt = None
        if self.sensing is not None:
            self.sensing.close()
            if self.store is not None and not self.store.read_only:
                release_writer(self.store.path)
            self.sensing = None
        self.workspace.close()
        if self.store is not None:
            self.store.close()
        if self.access is not None:
            self.access.close()
        if self.docs is not None:
            self.docs.close()

    def __enter__(self) -> ServiceCatalog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ resolution
    def authenticate(self, key: str | None) -> Principal:
        """The caller of a request that presented `key` (None: anonymous). Raises `InvalidKeyError`."""
        assert self.access is not None
        return self.access.authenticate(key)

    def model(self, name: str, who: Principal) -> Model:
        """A model the caller may see. Raises `TileNotFoundError`."""
        m = self.models.get(name)
        if m is None or not who.can_see(name, m.security):
            raise TileNotFoundError(f"no model {name!r} on this server; see /catalog")
        return m

    def model_file(self, name: str, path: str, who: Principal) -> FileEntry:
        """A file of a model by its URL path inside the model (`tileset.json`, `terrain/0/0_0.glb`)."""
        m = self.model(name, who)
        p = m.files.get(path)
        if p is None:
            raise TileNotFoundError(f"model {name!r} has no file {path!r}")
        return self.files.get(p)

    def raster_map(self, name: str, who: Principal) -> RasterMap:
        """A map the caller may see. Raises `TileNotFoundError`."""
        m = self.maps.get(name)
        if m is None or not who.can_see(name, self.map_security[name]):
            raise TileNotFoundError(f"no map {name!r} on this server; see /catalog")
        return m

    def terrain(self, name: str, who: Principal) -> Any:
        """The quantized-mesh terrain (`cim.models.qmterrain.QuantizedMeshTerrain`) of a DEM map the caller may see.

        A model's own DEM map uses the model's vertical datum when it is `egm96`; every other DEM is ellipsoidal.

        Raises:
            TileNotFoundError: no such map, hidden from the caller, or not a DEM.
        """
        m = self.raster_map(name, who)
        if m.kind != "dem":
            raise TileNotFoundError(f"map {name!r} is an image, not a DEM: it has no quantized-mesh terrain")
        terrain = self._terrain.get(name)
        if terrain is None:
            from cim.models.qmterrain import QuantizedMeshOptions, QuantizedMeshTerrain
            from cim.sources.vertical import VerticalDatum

            datum = VerticalDatum.parse("egm96" if self._map_datum.get(name) == "egm96" else None)
            terrain = self._terrain[name] = QuantizedMeshTerrain(m.path, QuantizedMeshOptions(vertical_datum=datum))
        return terrain

    def layer(self, name: str, who: Principal, action: str = "read", path: str = "", client: str | None = None
              ) -> LayerInfo:
        """A layer the caller may see; an access to a confidential layer is audited.

        Raises:
            LayerNotFoundError: no such layer, or hidden from this caller.
        """
        info = self.layers.get(name)
        if info is None or not who.can_see(name, info.security, info.theme):
            raise LayerNotFoundError(f"no collection {name!r} on this server; see /collections")
        if info.security == "confidential" and self.access is not None:
            self.access.audit(who, name, info.security, action, path, client)
        return info

    def vector_layer(self, name: str, who: Principal, path: str = "", client: str | None = None) -> VectorTileLayer:
        """The vector tile source of a layer the caller may see (audited like `layer`)."""
        info = self.layer(name, who, "tile", path, client)
        source = self._vector.get(name)
        if source is None:  # made on a layer's first tile: a city's thousands of layers start in no time
            assert self.store is not None
            source = self._vector[name] = VectorTileLayer(self.store, info, self.store.table_name(name),
                                                          self.mvt_options, self.workspace)
        return source

    def vector_version(self, name: str, version: int, who: Principal, path: str = "", client: str | None = None
                       ) -> VectorTileLayer:
        """The vector tile source of one version of a layer the caller may see (audited like `layer`).

        Raises:
            LayerNotFoundError: no such layer or version, or the layer is hidden from this caller.
        """
        current = self.layer(name, who, "tile", path, client)
        if version == current.version:
            return self.vector_layer(name, who, path, client)
        key = (name, version)
        source = self._versions.get(key)
        if source is None:
            assert self.store is not None
            try:
                info = self.store.info(name, version)
                table = self.store.table_name(name, version)
            except VersionNotFoundError as exc:
                raise LayerNotFoundError(f"layer {name!r} has no version {version}; see /viewer/versions/{name}"
                                         ) from exc
            source = self._versions[key] = VectorTileLayer(self.store, info, table, self.mvt_options, self.workspace)
        return source

    def layer_index(self) -> LayerIndex:
        """The viewer's index of every store layer (made once, on first use)."""
        with self._index_lock:
            if self._index is None:
                themes = self.store.themes() if self.store is not None else None
                from layers.themes import builtin

                self._index = LayerIndex(list(self.layers.values()), themes or builtin())
            return self._index

    def can_see_id(self, tree_id: str, who: Principal) -> bool | None:
        """Whether the caller may see a viewer tree id (`layer:N`, `model:M:PART`, `map:N`); None when it names
        nothing this server publishes."""
        kind, _, rest = tree_id.partition(":")
        if kind == "layer":
            info = self.layers.get(rest)
            return None if info is None else who.can_see(rest, info.security, info.theme)
        if kind == "model":
            m = self.models.get(rest.split(":", 1)[0])
            return None if m is None else who.can_see(m.name, m.security)
        if kind == "map":
            return None if rest not in self.maps else who.can_see(rest, self.map_security[rest])
        return None

    def visible_scenes(self, who: Principal) -> list[dict[str, Any]]:
        """The stored scenes whose every layer the caller may see."""
        if self.docs is None:
            return []
        from layers.scenes import Scene

        out = []
        for doc in self.docs.scenes():
            scene = Scene.model_validate(doc)
            if all(self.can_see_id(i, who) is not False for i in scene.names()):
                out.append(scene.to_dict())
        return out

    def visible_layers(self, who: Principal) -> list[LayerInfo]:
        return [i for i in self.layers.values() if who.can_see(i.name, i.security, i.theme)]

    def visible_models(self, who: Principal) -> list[Model]:
        return [m for m in self.models.values() if who.can_see(m.name, m.security)]

    def visible_maps(self, who: Principal) -> list[RasterMap]:
        return [m for n, m in self.maps.items() if who.can_see(n, self.map_security[n])]

    def describe(self, who: Principal, base: str) -> dict[str, Any]:
        """The `/catalog` document: every model, map and layer the caller may see, with URLs."""
        models = [{"name": m.name, "kind": "3dtiles", "title": m.title, "security": m.security,
                   "extent": list(m.bounds) if m.bounds else None,
                   "urls": {"tileset": f"{base}/3dtiles/{m.name}/tileset.json"}} for m in self.visible_models(who)]
        maps = []
        for m in self.visible_maps(who):
            info = m.info
            maps.append({
                "name": m.name, "kind": m.kind, "title": m.title, "security": self.map_security[m.name],
                "extent": list(info.bounds), "formats": list(m.formats),
                "encoding": "terrain-rgb" if m.kind == "dem" else None,
                "minzoom": info.minzoom, "maxzoom": info.maxzoom,
                # what a DEM's heights are measured from (a model's own DEM: the model's datum)
                "vertical_datum": self._map_datum.get(m.name, "ellipsoidal") if m.kind == "dem" else None,
                "urls": {"xyz": f"{base}/maps/{m.name}/{{z}}/{{x}}/{{y}}.{m.formats[0]}",
                         "tilejson": f"{base}/maps/{m.name}/tilejson.json",
                         "wmts": f"{base}/wmts/1.0.0/WMTSCapabilities.xml"}})
        layers = [{"name": i.name, "kind": "vector", "title": i.title, "theme": i.theme,
                   "theme_title": i.theme_title, "security": i.security, "department": i.department,
                   "geometry_type": i.geometry_type, "feature_count": i.feature_count, "version": i.version,
                   "extent": list(i.extent) if i.extent else None,
                   "urls": {"collection": f"{base}/collections/{i.name}",
                            "items": f"{base}/collections/{i.name}/items",
                            "tiles": f"{base}/tiles/{i.name}/{{z}}/{{x}}/{{y}}.mvt",
                            "tilejson": f"{base}/tiles/{i.name}/tilejson.json"}}
                  for i in self.visible_layers(who)]
        scenes = [{"name": sc["name"], "title": sc.get("title") or sc["name"], "title_en": sc.get("title_en", ""),
                   "description": sc.get("description", ""), "url": f"{base}/?scene={sc['name']}",
                   "document": f"{base}/viewer/scenes/{sc['name']}"} for sc in self.visible_scenes(who)]
        return {"title": self.settings.title, "models": models, "maps": maps, "layers": layers, "scenes": scenes}


def _region_bounds(tileset: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """Lon/lat degrees of a tileset root's bounding region, if it has one."""
    region = ((tileset.get("root") or {}).get("boundingVolume") or {}).get("region")
    if not isinstance(region, list) or len(region) < 4:
        return None
    return tuple(math.degrees(v) for v in region[:4])  # type: ignore[return-value]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


__all__ = ["Model", "ServiceCatalog"]
