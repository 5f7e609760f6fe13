"""`cim sensors ...`: live sensors in the store (layers/sensing): import a history of readings, simulate readings,
seed the sample city's sensors (docs/sensing.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cim.cli.options import JsonOpt, StoreOpt, echo_result, progress_bar

app = typer.Typer(
    help="Live sensors (OGC SensorThings API in the store): import history, simulate readings, seed the sample city.",
    no_args_is_help=True,
)

ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="Base URL of the `cim serve --ingest` server that writes the store: go through it.")]
KeyOpt = Annotated[str | None, typer.Option(
    "--api-key", help="A key with the grant sensing:write (default: $CIM_API_KEY).")]


def _key(api_key: str | None) -> str | None:
    return api_key or os.environ.get("CIM_API_KEY") or None


@app.command("import")
def sensors_import_cmd(
    file: Annotated[Path, typer.Argument(help="A .csv or .parquet of readings: datastream_id (or datastream names), "
                                              "phenomenon_time, result [, result_time, feature_id].")],
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    timezone: Annotated[str, typer.Option("--timezone", help="Zone of times written without one "
                                                             "(e.g. Asia/Shanghai).")] = "UTC",
    batch: Annotated[int, typer.Option("--batch", min=1, max=100_000, help="Rows per request through a server.")
                     ] = 20_000,
    skip: Annotated[int, typer.Option("--skip", min=0, help="Rows to leave out at the start (resume).")] = 0,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a history of readings: into the store (one transaction), or through a running server (--server)."""
    from layers.sensing.history import import_history

    with progress_bar(as_json) as cb:
        report = import_history(file, store, server=server, api_key=_key(api_key), timezone=timezone, batch=batch,
                                skip=skip, progress=None if cb is None else (lambda d, t: cb("import", d, t)))
    echo_result(report, as_json, f"imported {report.stored} of {report.rows} readings of {len(report.datastreams)} "
                                 f"Datastream(s), {report.first_time} .. {report.last_time}, via {report.via} "
                                 f"in {report.seconds:.1f} s")


def _sample_sensors(server: str | None, key: str | None, store: Path | None) -> tuple[list[Any], Any]:
    """The sample city's simulated sensors, from the server (read over HTTP) or the store (opened read-write);
    returns them and the open store (None through a server)."""
    from layers.sensing.errors import SensingInputError
    from layers.sensing.sample import SAMPLE_QUERY, sim_sensors

    if server:
        import httpx

        r = httpx.get(server.rstrip("/") + "/sta/v1.1/Things", params=SAMPLE_QUERY,
                      headers={"X-API-Key": key} if key else {}, timeout=60)
        if r.status_code != 200:
            raise SensingInputError(f"{server} answered {r.status_code} listing Things: {r.text[:200]}")
        sensors = sim_sensors(r.json()["value"])
        sensing = None
    else:
        from layers.sensing import SensingStore

        sensing = SensingStore(store).open()
        sensors = sim_sensors(sensing.get("Things", SAMPLE_QUERY)["value"])
    if not sensors:
        if sensing is not None:
            sensing.close()
        raise SensingInputError("no simulated sensors found (Things with properties.sample); seed them first: "
                                "cim sensors seed --store STORE (cim demo does it)")
    return sensors, sensing


@app.command("simulate")
def sensors_simulate_cmd(
    rate: Annotated[float, typer.Option("--rate", min=0.01, help="Observations per second, all sensors together.")
                    ] = 10.0,
    duration: Annotated[float | None, typer.Option("--duration", help="Seconds to run (default: until Ctrl-C).")
                        ] = None,
    server: ServerOpt = None,
    api_key: KeyOpt = None,
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="Publish to this broker (HOST:PORT) instead of "
                                                               "HTTP; the sensors are read from --server.")] = None,
    period: Annotated[float, typer.Option("--period", min=1, help="Minutes between storms.")] = 30.0,
    storm: Annotated[float, typer.Option("--storm", min=1, help="Minutes a storm lasts.")] = 12.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the storms' strengths and the noise.")] = 7,
    backfill: Annotated[float, typer.Option("--backfill", min=0, help="Hours of history to write first "
                                                                      "(every 5 minutes).")] = 0.0,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Publish deterministic readings for the sample city's sensors: storms over the rain gauges, the flood wave
    down the river, settlement; by HTTP (--server), MQTT (--mqtt) or into the store."""
    from datetime import UTC, datetime

    from layers.sensing.errors import SensingInputError
    from layers.sensing.mqtt import parse_address
    from layers.sensing.simulate import (
        Scenario,
        backfill_rows,
        http_publisher,
        mqtt_publisher,
        simulate,
        store_publisher,
    )

    if mqtt and not server:
        raise SensingInputError("--mqtt needs --server too: the sensors to simulate are read from the server")
    key = _key(api_key)
    scenario = Scenario(seed=seed, period_minutes=period, storm_minutes=min(storm, period),
                        nash_k_minutes=max(0.5, period / 10))
    sensors, sensing = _sample_sensors(server, key, store)
    closer: Any = None
    try:
        if mqtt:
            host, port = parse_address(mqtt)
            publish, closer = mqtt_publisher(host, port)
        elif server:
            publish, closer = http_publisher(server, key)
        else:
            publish = store_publisher(sensing)
        if backfill:
            rows = backfill_rows(sensors, scenario, datetime.now(UTC).replace(tzinfo=None), hours=backfill)
            for start in range(0, len(rows), 10_000):
                publish(rows[start:start + 10_000])
        with progress_bar(as_json or duration is None) as cb:
            total = int(rate * duration) if duration else 0
            sent = simulate(publish, sensors, scenario, rate=rate, duration=duration,
                            progress=None if cb is None else (lambda n: cb("simulate", n, total)))
    except KeyboardInterrupt:
        sent = -1
    finally:
        if closer is not None:
            if hasattr(closer, "loop_stop"):
                closer.loop_stop()
                closer.disconnect()
            else:
                closer.close()
        if sensing is not None:
            sensing.close()
    where = mqtt or server or "the store"
    echo_result({"sensors": len(sensors), "observations": sent, "to": where}, as_json,
                f"simulated {len(sensors)} sensors: {'interrupted' if sent < 0 else f'{sent} readings'} to {where}")


@app.command("seed")
def sensors_seed_cmd(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Create the sample city's sensors as SensorThings entities (water-level stations of the `sensors` layer, rain
    gauges, settlement points on the tallest buildings); kept when they exist."""
    from collections import Counter

    from layers.sensing import SensingStore
    from layers.sensing.sample import seed_sample_city

    with SensingStore(store) as s:
        sensors = seed_sample_city(s)
    kinds = Counter(x.kind for x in sensors)
    echo_result({"sensors": len(sensors), "kinds": dict(kinds)}, as_json,
                f"{len(sensors)} sample sensors: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
