"""Benchmark of the geocoder (issue 18): batch addresses/s, search-box p95 latency and the match quality against
the registry's ground truth, beside a brute-force matcher measured in the same run.

Two registries:

- **sample**: the embedded sample city's standard addresses (2,500) and its messy registry (about 24,000 records),
  written by `cim.sample.addresses.write_registry`;
- **large**: a generated city of `--buildings` footprints (default 110,000: about 110,000 standard addresses) and a
  registry of `--records` messy records (default 1,000,000) written by the same generator.

The brute-force matcher is what one writes without a parser or an index: normalise the text (our `normalise`, so it
is not handicapped by full-width forms or numerals) and take the standard address with the best rapidfuzz WRatio
over all of them (`process.extractOne`, C++), for geocoding and for the search box (`process.extract`, top 10). It
runs on a sample of the queries (`--brute`), since it is O(index) per query.

    .venv/bin/python bench/bench_geocode.py                    # both registries
    .venv/bin/python bench/bench_geocode.py --records 100000 --buildings 12000   # a quicker large run
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _quality(results, truth) -> tuple[float, float, int]:
    tp = fp = 0
    n = sum(1 for t in truth if t)
    for r, t in zip(results, truth, strict=True):
        if r is None:
            continue
        if r == t:
            tp += 1
        else:
            fp += 1
    return tp / max(tp + fp, 1), tp / max(n, 1), tp + fp


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def _search_queries(texts: list[str], n: int, rng: random.Random) -> list[str]:
    """What people type: a prefix (4..12 characters) of a registry address without its divisions."""
    out = []
    for t in rng.sample(texts, min(n, len(texts))):
        core = t
        for head in ("山西省", "山西", "大同市", "大同", "平城区"):
            core = core.removeprefix(head)
        core = core.strip(" ，")
        out.append(core[: rng.randint(4, 12)] or t[:6])
    return out


def run(name: str, geocoder, texts: list[str], truth: list[str], brute_n: int, search_n: int, seed: int = 1) -> None:
    from rapidfuzz import fuzz, process

    from layers.addresses.text import normalise

    rng = random.Random(seed)
    print(f"\n== {name}: {len(geocoder):,} standard addresses, {len(texts):,} registry records")
    t0, c0 = time.perf_counter(), time.process_time()
    res = geocoder.geocode_many(texts)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    ours = [r.building_code if r.matched else None for r in res]
    prec, rec, reported = _quality(ours, truth)
    # on a shared machine the wall time is mostly waiting for a core: the CPU time says what a free core does
    print(f"ours   batch: {len(texts) / dt:,.0f} addresses/s ({dt:.1f} s wall; {len(texts) / cpu:,.0f} per CPU "
          f"second); precision {prec:.4f}, "
          f"recall {rec:.4f} ({reported:,} reported as matches)")
    # the same texts, one by one and each new to the geocoder's per-batch cache: the worst case per address
    idx = rng.sample(range(len(texts)), min(brute_n * 10, len(texts)))
    t0 = time.perf_counter()
    for i in idx:
        geocoder.geocode(texts[i])
    one = (time.perf_counter() - t0) / len(idx)
    print(f"ours   single: {1 / one:,.0f} addresses/s ({one * 1e6:.0f} us each)")

    keys = [normalise(a) for a in geocoder.addresses.column("address")]
    bcodes = geocoder.addresses.column("building_code")
    idx = rng.sample(range(len(texts)), min(brute_n, len(texts)))
    t0 = time.perf_counter()
    brute = []
    for i in idx:
        hit = process.extractOne(normalise(texts[i]), keys, scorer=fuzz.WRatio, score_cutoff=80)
        brute.append(bcodes[hit[2]] if hit else None)
    bdt = time.perf_counter() - t0
    bprec, brec, _ = _quality(brute, [truth[i] for i in idx])
    oprec, orec, _ = _quality([ours[i] for i in idx], [truth[i] for i in idx])
    print(f"brute  batch: {len(idx) / bdt:,.1f} addresses/s on {len(idx):,} records; precision {bprec:.4f}, "
          f"recall {brec:.4f} (ours on the same records: {oprec:.4f} / {orec:.4f})")
    print(f"ratio  batch throughput ours / brute force: {(len(texts) / dt) / (len(idx) / bdt):,.0f}x")

    queries = _search_queries(texts, search_n, rng)
    geocoder.suggest(queries[0])  # builds the search index (timed below)
    times, cpu_times = [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        geocoder.suggest(q, 10)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.thread_time() - c0)
    btimes = []
    for q in queries[: max(10, brute_n // 10)]:
        t0 = time.perf_counter()
        process.extract(normalise(q), keys, scorer=fuzz.WRatio, limit=10)
        btimes.append(time.perf_counter() - t0)
    print(f"ours   search: p50 {_p(times, 50):.1f} ms, p95 {_p(times, 95):.1f} ms, max {max(times) * 1000:.1f} ms "
          f"over {len(times):,} typed prefixes (CPU time: p50 {_p(cpu_times, 50):.1f} ms, "
          f"p95 {_p(cpu_times, 95):.1f} ms)")
    print(f"brute  search: p50 {_p(btimes, 50):.1f} ms, p95 {_p(btimes, 95):.1f} ms over {len(btimes):,}")
    print(f"ratio  search p95 brute / ours: {_p(btimes, 95) / _p(times, 95):,.1f}x")
    pts = rng.sample(range(len(geocoder)), min(2000, len(geocoder)))
    lon = geocoder.addresses.table.column("lon").to_numpy()[pts] + 0.0003
    lat = geocoder.addresses.table.column("lat").to_numpy()[pts]
    t0 = time.perf_counter()
    geocoder.reverse_many(lon, lat)
    print(f"ours   reverse: {len(pts) / (time.perf_counter() - t0):,.0f} points/s")


def sample_registry(work: Path):
    import csv

    import pyogrio

    from cim.sample.addresses import REGISTRY_FILES, TRUTH_FILE, write_registry
    from layers.addresses import Gazetteer, Geocoder, addresses_from_footprints

    root = Path(__file__).resolve().parents[1] / "data" / "sample_city"
    divisions = []
    for f in ("streets", "communities"):
        g = pyogrio.read_dataframe(root / f"{f}.gpkg").to_crs(4490)
        divisions += list(zip(g["code"], g["name"], g.geometry.values, strict=True))
    buildings = pyogrio.read_dataframe(root / "buildings.gpkg")
    write_registry(work, buildings, divisions, 7)
    gaz = Gazetteer.from_divisions(divisions)
    table, _ = addresses_from_footprints(buildings, gaz)
    truth = {(r["registry"], r["record_id"]): r["building_code"]
             for r in csv.DictReader((work / TRUTH_FILE).open(encoding="utf-8"))}
    texts, want = [], []
    for reg, fname in REGISTRY_FILES.items():
        for row in csv.DictReader((work / fname).open(encoding="utf-8")):
            texts.append(row["address"])
            want.append(truth[(reg, next(iter(row.values())))] or None)
    return Geocoder(table, gaz), texts, want


def large_registry(work: Path, buildings: int, records: int):
    import pyogrio

    from cim.sample import generate
    from cim.sample.addresses import messy_records
    from layers.addresses import Gazetteer, Geocoder, addresses_from_footprints

    t0 = time.perf_counter()
    city = generate(work / "city", buildings=buildings, rasters=False, layers=("buildings", "streets", "communities"),
                    footprint_format="parquet")
    divisions = []
    for f in ("streets", "communities"):
        g = pyogrio.read_dataframe(work / "city" / f"{f}.gpkg").to_crs(4490)
        divisions += list(zip(g["code"], g["name"], g.geometry.values, strict=True))
    import geopandas as gpd

    b = gpd.read_parquet(city.buildings)
    gaz = Gazetteer.from_divisions(divisions)
    table, _ = addresses_from_footprints(b, gaz)
    uses = dict(zip(b["code"].astype(str), b["use"], strict=True))
    floors = {str(c): (int(f) if f == f and f is not None else 1) for c, f in zip(b["code"], b["floors"], strict=True)}
    texts, want = [], []
    for _, _, rec in messy_records(table, uses, floors, 11, n_records=records):
        texts.append(rec.text)
        want.append(rec.building_code)
    print(f"(large registry generated in {time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    gc = Geocoder(table, gaz)
    print(f"(index of {len(gc):,} addresses built in {time.perf_counter() - t0:.1f} s)")
    return gc, texts, want


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buildings", type=int, default=110_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--brute", type=int, default=1000, help="records the brute-force matcher geocodes")
    ap.add_argument("--searches", type=int, default=1000, help="search-box queries")
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="bench-geocode-") as tmp:
        gc, texts, truth = sample_registry(Path(tmp) / "sample")
        run("sample", gc, texts, truth, args.brute, args.searches)
        if not args.skip_large:
            gc, texts, truth = large_registry(Path(tmp) / "large", args.buildings, args.records)
            run("large", gc, texts, truth, max(100, args.brute // 5), args.searches)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
