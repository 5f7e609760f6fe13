"""`cim demo`: the whole twin in one command (sample city -> models -> layer store -> server -> viewer).

`prepare_demo(root)` makes everything the demo serves, in one predictable folder, and reuses what an earlier run made:

    cim-demo/
      city/              the sample city (only with `buildings=`; the default city lives in $CIM_CACHE)
      l2/                level-2 model: terrain + LOD1 blocks (cim build --level 2)
      l3/                level-3 model: LOD2 buildings with roofs on the terrain (cim build --level 3)
      oblique/           with `oblique=True`: the synthetic oblique production as a model (and oblique-src/)
      city.duckdb        every vector layer of the city's manifest, with its theme, title and security level, and
                         the city's sensors (SensorThings, `layers.sensing.sample`) with the last 24 h of readings
      flood/storm-50y/   the storm scenario: a 50-year one-hour storm on the sample city (cim.analysis.flood)
      city.access.sqlite API keys of the server; the demo's own key (scope confidential) is in demo-key.txt, the
                         simulator's (confidential,sensing:write) in simulator-key.txt
      city.docs.sqlite   the viewer's documents: three scenes (planning, emergency, iot) with their styles

`run_demo()` then serves it with `cim serve --ingest` (tiles.server), prints the viewer's URL, and feeds the server
simulated readings over HTTP (`layers.sensing.simulate`: a storm every 10 minutes, its flood wave down the river,
settling buildings), so the city's sensors move on the map and open and close alerts.

    >>> site = prepare_demo("cim-demo")          # doctest: +SKIP
    >>> site.viewer_url(port=8000)                # doctest: +SKIP
    'http://127.0.0.1:8000/?api_key=cim_...'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cim.errors import InputError
from cim.files import user_path
from cim.sample import SampleCity, default_sample, generate, is_complete, load
from tiles.compression import GlbOptions

if TYPE_CHECKING:
    from tiles.server.settings import ServerSettings

DEFAULT_DEMO_DIR = Path("cim-demo")
KEY_FILE = "demo-key.txt"
SIMULATOR_KEY_FILE = "simulator-key.txt"
STORE_FILE = "city.duckdb"

Echo = Callable[[str], None]

# Sub-themes the sample manifest uses that the standard CIM tree lacks: title -> (id, English title).
_SUB_THEMES: dict[str, tuple[str, str]] = {
    "建筑": ("buildings", "Buildings"),
    "道路": ("roads", "Roads"),
    "水系": ("water", "Water"),
    "历史文化保护": ("heritage", "Historic and cultural protection"),
    "行政区划": ("admin_divisions", "Administrative divisions"),
    "应急避难": ("emergency_shelters", "Emergency shelters"),
    "危险源": ("hazard_sources", "Hazard sources"),
    "水位监测": ("water_level", "Water-level monitoring"),
    "控高分区": ("height_control", "Height control"),
    "园林绿化": ("greening", "Parks and greening"),
}


@dataclass(frozen=True)
class DemoSite:
    """What `prepare_demo` made.

    Attributes:
        root: the demo folder.
        city: the sample city served.
        models: built models by the name they are served under (`city` = level 2, `lod2` = level 3, `oblique`).
        store: the layer store.
        key: an API key that sees everything (scope `confidential`), for the local user.
        security: security levels of the models and maps, from the city's manifest.
        maps: the orthophoto and DEM by served name.
        sensors: the simulated sensors of the city (`layers.sensing.simulate.SimSensor`), in the store.
        simulator_key: a key with the grant sensing:write, for the simulator that feeds the server.
    """

    root: Path
    city: SampleCity
    models: dict[str, Path]
    store: Path
    key: str
    security: dict[str, str] = field(default_factory=dict)
    maps: dict[str, Path] = field(default_factory=dict)
    sensors: list[Any] = field(default_factory=list)
    simulator_key: str | None = None
    flood: Path | None = None

    def settings(self, host: str = "127.0.0.1", port: int = 8000, **kw: Any) -> ServerSettings:
        """Server settings that publish the site (extra keyword arguments go to `ServerSettings`); the server takes
        observations (`ingest`) when the site has sensors."""
        from tiles.server.settings import ServerSettings

        kw.setdefault("ingest", bool(self.sensors))
        return ServerSettings(store=self.store, models=self.models, maps=self.maps, security=self.security,
                              host=host, port=port, title="cim demo: 大同市平城区", flood_runs=self.flood, **kw)

    def viewer_url(self, host: str = "127.0.0.1", port: int = 8000, *, with_key: bool = True) -> str:
        """The viewer's URL; with the demo key, the page shows every layer."""
        url = f"http://{host}:{port}/"
        return f"{url}?api_key={self.key}" if with_key else url

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "city": str(self.city.root), "store": str(self.store),
                "models": {k: str(v) for k, v in self.models.items()},
                "maps": {k: str(v) for k, v in self.maps.items()}, "security": self.security,
                "sensors": len(self.sensors), "flood": str(self.flood) if self.flood else None}


def _manifest(city: SampleCity) -> dict[str, Any]:
    return json.loads(city.manifest.read_text(encoding="utf-8"))


def ensure_theme(store: Any, path: str) -> str:
    """Add the sub-themes of `path` (a path of titles) the store lacks; return the theme's id path."""
    from layers.errors import ThemeNotFoundError

    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        try:
            store.themes().get("/".join(parts[:depth]))
        except ThemeNotFoundError:
            title = parts[depth - 1]
            theme_id, en = _SUB_THEMES.get(title, ("t_" + hashlib.sha1(title.encode()).hexdigest()[:8], title))
            store.add_theme(store.themes().get("/".join(parts[: depth - 1])).path, theme_id, title, en)
    return store.themes().get(path).path


def load_sample_layers(city: SampleCity, store_path: str | os.PathLike[str], *, replace: bool = False,
                       echo: Echo | None = None) -> list[str]:
    """Import every vector layer of a sample city's manifest into a store, with its theme, title, department and
    security level. Layers the store already holds are kept unless `replace`.

    Returns:
        The names of the layers imported now.
    """
    from layers import LayerStore

    done: list[str] = []
    with LayerStore(store_path) as store:
        have = {i.name for i in store.list()}
        for e in _manifest(city)["files"]:
            if e["kind"] != "vector" or (e["layer"] in have and not replace):
                continue
            theme = ensure_theme(store, e["theme"])
            if echo:
                echo(f"importing {e['layer']} ({e['title_zh']}, {e['security']})")
            store.import_file(city.root / e["path"], e["layer"], theme, title=e["title_zh"],
                              department=e.get("department"), security=e["security"],
                              new_version=e["layer"] in have)
            done.append(e["layer"])
    return done


def _built_from(model: Path, city: SampleCity, glb: GlbOptions | None = None) -> bool:
    """True when `model` is a finished build of this city's inputs with these glb options (None: the defaults)."""
    try:
        report = json.loads((model / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = dataclasses.asdict(glb) if glb is not None else None
    return ((model / "tileset.json").is_file() and report.get("inputs", {}).get("buildings") == str(city.buildings)
            and report.get("glb") == wanted)


def _demo_key(root: Path, store: Path, file: str = KEY_FILE, scope: str = "confidential",
              label: str = "cim demo") -> str:
    from tiles.errors import InvalidKeyError
    from tiles.server.auth import AccessStore, access_path

    path = root / file
    with AccessStore(access_path(store)) as access:
        if path.is_file():
            key = path.read_text(encoding="utf-8").strip()
            try:
                access.authenticate(key)
                return key
            except InvalidKeyError:
                pass
        key = access.create(scope, label).key
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return key


DEMO_SCENARIO = {"period_minutes": 10.0, "storm_minutes": 4.0, "nash_k_minutes": 1.0}  # a storm every 10 minutes


def prepare_sensors(store: Path, *, hours: float = 24.0, echo: Echo | None = None,
                    clock: Callable[[], datetime] | None = None) -> list[Any]:
    """Seed the sample city's sensors into the store (once) and write their readings of the last `hours` that are
    missing (every 5 minutes), so the viewer's charts and time slider have a history.

    Args:
        store: the layer store file.
        hours: how much history.
        echo: called with one line per step.
        clock: what "now" is (naive UTC; default the wall clock), as for the simulator (`run_demo`).

    Returns:
        The simulated sensors (`layers.sensing.simulate.SimSensor`).
    """
    from datetime import timedelta

    from layers.sensing import SensingStore
    from layers.sensing.sample import seed_sample_city
    from layers.sensing.simulate import Scenario, backfill_rows, store_publisher
    from layers.sensing.values import now_utc

    with SensingStore(store) as s:
        sensors = seed_sample_city(s)
        now = (clock or now_utc)()
        times = [r["phenomenonTime"] for r in s.latest() if r["phenomenonTime"]]
        last = max((datetime.fromisoformat(t.rstrip("Z")) for t in times), default=now - timedelta(hours=hours))
        missing = (now - max(last, now - timedelta(hours=hours))).total_seconds() / 3600
        if missing * 12 >= 1:
            rows = backfill_rows(sensors, Scenario(**DEMO_SCENARIO), now, hours=missing)
            if echo:
                echo(f"sensors: writing {len(rows)} readings of the last {missing:.1f} h")
            store_publisher(s)(rows)
    return sensors


def prepare_addresses(city: SampleCity, store: Path, root: Path, *, echo: Echo | None = None) -> list[str]:
    """Standard addresses (标准地址) of the city's buildings and its three 一标三实 registries (population,
    organisations, houses: the sample's messy registry, written into `root/registry` once) geocoded and linked to
    them, as layers of the store; what the store already holds is kept. Returns the layers made.

    The viewer's search box then geocodes typed addresses, and identify on a building lists its 一标三实 records.
    """
    from cim.sample.addresses import REGISTRY_FILES, add_registry
    from layers import LayerStore
    from layers.addresses import build_address_layer, link_registry
    from layers.addresses.links import REGISTRIES

    say = echo or (lambda line: None)
    registry = root / "registry"
    made: list[str] = []
    with LayerStore(store) as s:
        have = {i.name for i in s.list()}
        if "addresses" not in have:
            report = build_address_layer(s, "buildings")
            say(f"standard addresses: {report.addresses} from the buildings layer")
            made.append(report.layer)
        wanted = {kind: REGISTRIES[kind]["layer"] for kind in REGISTRY_FILES}
        if set(wanted.values()) <= have:
            return made
        if not registry.is_dir():  # written beside and renamed into place: a folder that exists is complete
            say(f"一标三实 registry: writing the sample's messy registry into {registry}")
            tmp = root / ".registry.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            add_registry(city, out=tmp)
            tmp.rename(registry)
        for kind, layer in wanted.items():
            if layer not in have:
                if not (registry / REGISTRY_FILES[kind]).is_file():  # a small city may have no such records
                    say(f"一标三实 {kind}: the sample city has no records of this kind")
                    continue
                linked = link_registry(s, registry / REGISTRY_FILES[kind], kind)
                say(f"一标三实 {kind}: {linked.linked} of {linked.records} records linked to buildings as {linked.layer}")
                made.append(linked.layer)
    return made


def _simulate_into(site: DemoSite, base: str, stop: threading.Event,
                   clock: Callable[[], datetime] | None = None) -> None:
    """Feed the running server simulated readings over HTTP until `stop` is set (every sensor every 5 s), stamped
    and valued by `clock` (default the wall clock)."""
    import logging

    import httpx

    from layers.sensing.simulate import Scenario, http_publisher, simulate

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per POST would drown the server's log
    while not stop.is_set():  # wait for the server
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            stop.wait(0.3)
    publish, client = http_publisher(base, site.simulator_key)
    try:
        simulate(publish, site.sensors, Scenario(**DEMO_SCENARIO), rate=max(1.0, len(site.sensors) / 5),
                 stop=stop.is_set, tick=1.0, clock=clock)
    except Exception as exc:  # noqa: BLE001 - the demo server keeps serving when its simulator stops
        print(f"cim demo: the sensor simulator stopped: {exc}")
    finally:
        client.close()


def prepare_demo(
    root: str | os.PathLike[str] = DEFAULT_DEMO_DIR,
    *,
    buildings: int | None = None,
    seed: int = 7,
    levels: Sequence[int] = (2, 3),
    oblique: bool = False,
    sensors: bool = True,
    flood: bool = True,
    flood_resolution: float = 8.0,
    texture_quality: int | None = None,
    echo: Echo | None = None,
    clock: Callable[[], datetime] | None = None,
) -> DemoSite:
    """Make (or reuse) everything the demo serves: the sample city, its models, its layer store, its sensors and
    keys.

    Args:
        root: the demo folder (created when missing).
        buildings: build a city of this many buildings into `root/city` (default: the default sample city, cached
            under $CIM_CACHE).
        seed: seed of a generated city.
        levels: CIM levels to build: 2 (terrain + LOD1), 3 (LOD2 roofs on the terrain).
        oblique: also build the synthetic oblique production as a model (slower; uses osgconv when installed).
        sensors: seed the city's sensors into the store with their last 24 h of readings (`prepare_sensors`).
        flood: also run the storm scenario into `root/flood` (the emergency map's flood; reused when done).
        flood_resolution: its cell size (m); 8 m takes seconds, the city's own 2 m a few minutes.
        texture_quality: build the models with every texture at this WebP quality (1-100), one encoding each
            (`GlbOptions.texture_quality`, `cim build --texture-quality`): a faster build than the default
            per-texture choice checked against the photo. A model built with other options is built again.
        echo: called with one line per step.
        clock: what "now" is for the sensors' history (naive UTC; default the wall clock).

    Returns:
        The site; `site.settings()` serves it.

    Raises:
        InputError: a level other than 2 or 3.
    """
    from cim.build import build_city
    from cim.tiling import close_shared_clusters, shared_clusters

    say = echo or (lambda line: None)
    clusters_before = shared_clusters()
    root = user_path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not set(levels) <= {2, 3}:
        raise InputError(f"levels={list(levels)}: the demo builds level 2 and/or 3")
    glb = None if texture_quality is None else GlbOptions(texture_quality=texture_quality)
    if buildings is None:
        say("sample city: the default city (generated once into $CIM_CACHE when missing)")
        city = default_sample()
    else:
        target = root / "city"
        if is_complete(target) and load(target).n_buildings == buildings:
            city = load(target)
        else:
            say(f"sample city: generating {buildings} buildings into {target}")
            city = generate(target, buildings=buildings, seed=seed, overwrite=True)
    if city.dem is None:
        raise InputError(f"sample city {city.root} has no DEM; regenerate it with rasters")
    manifest = {e.get("layer") or e["kind"]: e for e in _manifest(city)["files"]}
    building_security = manifest["buildings"]["security"]
    models: dict[str, Path] = {}
    security: dict[str, str] = {}
    for level, name in ((2, "city"), (3, "lod2")):
        if level not in levels:
            continue
        out = root / f"l{level}"
        if not _built_from(out, city, glb):
            say(f"building the level-{level} model into {out}")
            build_city(out, level=level, dem=city.dem, ortho=city.ortho, buildings=city.buildings, dsm=city.dsm,
                       glb=glb, overwrite=True)
        models[name] = out
        security[name] = building_security
    if oblique:
        from cim.sample import write_oblique

        src, out = root / "oblique-src", root / "oblique"
        if not _built_from(out, city, glb):
            if not (src / "metadata.xml").is_file():
                say(f"writing the synthetic oblique production into {src}")
                write_oblique(city, src, overwrite=True)
            say(f"building the oblique model into {out}")
            build_city(out, level=3, dem=city.dem, ortho=city.ortho, buildings=city.buildings, oblique=src,
                       glb=glb, overwrite=True)
        models["oblique"] = out
        security["oblique"] = building_security
    # the builds' Dask workers are not needed for the storm run and the serving that follow
    close_shared_clusters(keep=clusters_before)
    maps: dict[str, Path] = {}
    for kind in ("ortho", "dem"):
        path = getattr(city, kind)
        if path is not None and models:
            # named like the maps `cim serve` derives from the first model, so they are not published twice
            name = f"{next(iter(models))}_{kind}"
            maps[name] = path
            security[name] = manifest[kind]["security"]
    store = root / STORE_FILE
    imported = load_sample_layers(city, store, echo=say)
    if imported:
        say(f"layer store {store}: imported {len(imported)} layer(s)")
    if {"streets", "communities"} <= set(city.layers):  # the divisions the registry needs
        prepare_addresses(city, store, root, echo=say)
    sim = prepare_sensors(store, echo=say, clock=clock) if sensors else []
    simulator_key = _demo_key(root, store, SIMULATOR_KEY_FILE, "confidential,sensing:write",
                              "cim demo simulator") if sensors else None
    runs = None
    if flood and buildings is None:
        from cim.analysis.flood.scenario import SCENARIO, sample_storm

        runs = root / "flood"
        say(f"storm scenario: a 50-year one-hour storm into {runs / SCENARIO} (reused when done)")
        sample_storm(runs, resolution=flood_resolution)
    scenes = write_demo_scenes(store, list(models), list(maps))
    say(f"scenes: {', '.join(scenes)} (open them at /?scene=NAME)")
    return DemoSite(root=root, city=city, models=models, store=store, key=_demo_key(root, store),
                    security=security, maps=maps, sensors=sim, simulator_key=simulator_key, flood=runs)


def write_demo_scenes(store_path: str | os.PathLike[str], models: Sequence[str], maps: Sequence[str]) -> list[str]:
    """Save the demo's scenes into the store's document file (replacing earlier ones): `planning` (height-control
    zones graduated by their limit over the 3D city), `emergency` (hazard sources, shelters sized by capacity,
    population density) and `iot` (water-level sensors by status along the river, in 3D). Returns their names.
    """
    from layers.docstore import DocumentStore, docs_path
    from layers.scenes import Scene, save_scene
    from layers.store import LayerStore
    from layers.styles import make_style

    model = next((m for m in ("city", "lod2", "oblique") if m in models), None)
    ortho = next((m for m in maps if m.endswith("_ortho")), None)
    base = ([{"id": f"map:{ortho}"}] if ortho else []) + ([{"id": f"model:{model}:terrain"}] if model else [])
    city3d = [{"id": f"model:{model}:{'oblique' if model == 'oblique' else 'buildings'}"}] if model else []
    with LayerStore(store_path, read_only=True) as store:
        names = {i.name for i in store.list()}
        ext = store.info("communities").extent if "communities" in names else None
        lon, lat = ((ext[0] + ext[2]) / 2, (ext[1] + ext[3]) / 2) if ext else (113.3, 40.09)

        def layer(name: str, style: dict[str, Any] | None = None, opacity: float = 1.0) -> list[dict[str, Any]]:
            return [{"id": f"layer:{name}", "opacity": opacity, **({"style": style} if style else {})}] \
                if name in names else []

        def styled(name: str, kind: str, **kw: Any) -> dict[str, Any] | None:
            return make_style(store, name, kind, **kw).to_dict() if name in names else None  # type: ignore[arg-type]

        scenes = [
            Scene(name="planning", title="规划审查：高度控制", title_en="Planning review: height control",
                  description="控高分区（按限高分级）、古城墙与道路，叠加三维城市",
                  layers=[*base, *city3d, *layer("height_zones", styled("height_zones", "graduated", field="max_height_m",
                                                                          method="equal_interval", n_classes=4,
                                                                          ramp="Purples"), 0.7),
                          *layer("wall"), *layer("roads")],
                  camera={"longitude": lon, "latitude": lat - 0.006, "zoom": 15.2, "pitch": 55, "bearing": -20},
                  mode="3d"),
            Scene(name="emergency", title="应急一张图：避难与风险", title_en="Emergency map: shelters and hazards",
                  description="危险源、按容量分级的避难场所与人口密度",
                  layers=[*base, *layer("population", styled("population", "graduated", field="density",
                                                             method="quantile", n_classes=5), 0.6),
                          *layer("hazards"), *layer("shelters", styled("shelters", "graduated_size", field="capacity",
                                                                       method="quantile", n_classes=4)),
                          *layer("river")],
                  camera={"longitude": lon, "latitude": lat, "zoom": 14.6, "pitch": 0, "bearing": 0}, mode="2d"),
            Scene(name="iot", title="物联感知：水位监测", title_en="IoT: water-level sensors",
                  description="河道水位传感器（按状态着色）与三维城市",
                  layers=[*base, *city3d, *layer("river"), *layer("river_centerline"),
                          *layer("sensors", styled("sensors", "unique", field="status"))],
                  camera={"longitude": lon, "latitude": lat - 0.004, "zoom": 15.0, "pitch": 50, "bearing": 15},
                  mode="3d"),
        ]
    with DocumentStore(docs_path(store_path)) as docs:
        for scene in scenes:
            save_scene(docs, scene)
    return [sc.name for sc in scenes]


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt" \
        or shutil.which("open") is not None and os.uname().sysname == "Darwin"


def run_demo(
    root: str | os.PathLike[str] = DEFAULT_DEMO_DIR,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = True,
    buildings: int | None = None,
    oblique: bool = False,
    texture_quality: int | None = None,
    echo: Echo = print,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Prepare the demo, print the viewer's URL, open a browser when there is a display, and serve until
    interrupted (the library function behind `cim demo`).

    `clock` (naive UTC; default the wall clock) is the simulated sensors' time, for their history and their live
    readings: the storms, the alerts they open and the warning runs those start follow it
    (`layers.sensing.simulate.clock_from(start)` replays a chosen moment)."""
    from tiles.server import serve

    site = prepare_demo(root, buildings=buildings, oblique=oblique, texture_quality=texture_quality, echo=echo,
                        clock=clock)
    url = site.viewer_url(host, port)
    echo(f"viewer (every layer, with the demo's key): {url}")
    echo(f"viewer (anonymous, public layers only):    {site.viewer_url(host, port, with_key=False)}")
    if open_browser and _has_display():
        threading.Timer(2.0, webbrowser.open, args=(url,)).start()
    stop = threading.Event()
    if site.sensors:
        echo(f"sensors: {len(site.sensors)} simulated, a storm every {DEMO_SCENARIO['period_minutes']:g} minutes "
             f"(alerts: http://{host}:{port}/alerts)")
        threading.Thread(target=_simulate_into, args=(site, f"http://{host}:{port}", stop, clock),
                         name="cim-demo-simulator", daemon=True).start()
    try:
        serve(site.settings(host, port))
    finally:
        stop.set()


__all__ = ["DEFAULT_DEMO_DIR", "DEMO_SCENARIO", "DemoSite", "ensure_theme", "load_sample_layers", "prepare_demo",
           "prepare_sensors", "run_demo"]
