"""Scaling efficiency of the oblique production from 1 to 2 Dask workers (issue 16's bar: t1 / (2 t2) >= 0.8).

Each measurement is one child process holding one LocalCluster of N workers, started and warmed up (one build)
before the timing, then `--runs` builds of `cim.models.oblique.convert_production` into the same folder with
`overwrite=True`. Rounds take 2 workers then 1 worker in turn; the efficiency is that of the medians over all
runs of a worker count (and per round, to show the spread). The outputs of all runs must be the same bytes.

One cluster at a time on purpose: a second, idle LocalCluster in the same process (its scheduler in the
driver, its nanny and worker beside it) costs the 2-worker runs CPU on a 2-core machine and not the 1-worker
runs (they have a free core): the production's 2-worker median rose from 0.416 to 0.44-0.45 s that way here
(2026-12-05). `bench_dask.py --oblique` keeps both clusters up, so its efficiency reads low;
this script is the measure.

Encodings: `raw` (`GlbOptions(compression="none", textures="original")`: the conversion and tree, no texture
encoding; the protocol of docs/benchmarks.md's sessions 12-15) and `default` (what `cim build` writes: the
texture encoding divides over the workers, so it scales better).

    python bench/bench_oblique_scaling.py                              # raw, 3 rounds x 7 runs
    python bench/bench_oblique_scaling.py --encodings raw default --copies 8 --copy-runs 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ROOT.parent / "shared" / "data" / "oblique_osgb" / "zhongshan"


def digest(folder: Path) -> str:
    """sha256 over the output's relative paths and bytes, sorted (16 hex digits)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def child(workers: int, runs: int, production: Path, out: Path, encoding: str) -> None:
    """One LocalCluster of `workers`: a warm-up build, then `runs` timed builds; one JSON line."""
    sys.path.insert(0, str(ROOT))
    from distributed import Client

    from cim.models.oblique import ObliqueOptions, convert_production
    from cim.tiling import Runner, start_local_cluster
    from tiles.compression import GlbOptions

    raw = GlbOptions(compression="none", textures="original")
    options = ObliqueOptions(glb=raw) if encoding == "raw" else None
    with Client(start_local_cluster(workers), set_as_default=False) as client:
        def build() -> float:
            t0 = time.perf_counter()
            with Runner(client=client) as runner:
                convert_production(production, out, overwrite=True, runner=runner, options=options)
            return time.perf_counter() - t0

        build()
        times = [build() for _ in range(runs)]
    print(json.dumps({"workers": workers, "times": times, "digest": digest(out)}), flush=True)


def copies_of(production: Path, copies: int, dest: Path) -> Path:
    """A production of `copies` x the `Tile_*` folders of `production` (symlinks; same metadata.xml)."""
    data = dest / "Data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(production / "metadata.xml", dest / "metadata.xml")
    for k in range(copies):
        for t in sorted(p for p in (production / "Data").iterdir() if p.is_dir()):
            link = data / f"{t.name}-copy{k:03d}"
            if not link.exists():
                link.symlink_to(t.resolve(), target_is_directory=True)
    return dest


def measure(production: Path, work: Path, encoding: str, rounds: int, runs: int) -> dict:
    """Rounds of (2 workers, 1 worker), each a child process; medians, efficiencies, same bytes."""
    times: dict[int, list[float]] = {1: [], 2: []}
    per_round, digests = [], set()
    for _ in range(rounds):
        med = {}
        for n in (2, 1):
            out = work / f"out-{production.name}-{encoding}-{n}"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(n), str(runs), str(production), str(out), encoding],
                check=False, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"bench_oblique_scaling: the build of {production} on {n} worker(s) failed "
                         f"(exit {proc.returncode}):\n" + "\n".join(proc.stderr.strip().splitlines()[-15:]))
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            times[n] += res["times"]
            med[n] = statistics.median(res["times"])
            digests.add(res["digest"])
        per_round.append(round(med[1] / (2 * med[2]), 3))
    t1, t2 = statistics.median(times[1]), statistics.median(times[2])
    return {"production": production.name, "encoding": encoding, "runs": len(times[1]), "t2_s": round(t2, 3),
            "t1_s": round(t1, 3), "efficiency": round(t1 / (2 * t2), 3), "per_round": per_round,
            "same_bytes": len(digests) == 1, "digest": min(digests), "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        n, runs, production, out, encoding = sys.argv[2:7]
        child(int(n), int(runs), Path(production), Path(out), encoding)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--production", type=Path, default=PRODUCTION)
    ap.add_argument("--encodings", nargs="+", choices=["raw", "default"], default=["raw"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=7, help="timed builds per round and worker count")
    ap.add_argument("--copies", type=int, default=0, help="also a production of COPIES x the Tile_* folders")
    ap.add_argument("--copy-rounds", type=int, default=2)
    ap.add_argument("--copy-runs", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="one JSON document at the end, nothing else")
    args = ap.parse_args()
    if not (args.production / "metadata.xml").exists():
        sys.exit(f"bench_oblique_scaling: no production at {args.production} (metadata.xml missing); "
                 "pass --production")
    work = Path(tempfile.mkdtemp(prefix="cim-bench-oblique-scaling-"))
    rows = []
    try:
        if not args.json:
            print(f"start {time.strftime('%H:%M:%S')}, load average {os.getloadavg()[0]:.2f}", flush=True)
        jobs = [(args.production, args.rounds, args.runs)]
        if args.copies > 1:
            big = copies_of(args.production, args.copies, work / f"production-x{args.copies}")
            jobs.append((big, args.copy_rounds, args.copy_runs))
        for encoding in args.encodings:
            for production, rounds, runs in jobs:
                rows.append(measure(production, work, encoding, rounds, runs))
                if not args.json:
                    r = rows[-1]
                    print(f"{r['production']:>16} {r['encoding']:>7}: 2 workers {r['t2_s']:.3f} s, 1 worker "
                          f"{r['t1_s']:.3f} s (medians of {r['runs']}), efficiency {r['efficiency']:.2f} "
                          f"(rounds {r['per_round']}), same bytes {r['same_bytes']} ({r['digest']}), "
                          f"load {r['load']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(rows))
    elif not all(r["same_bytes"] for r in rows):
        sys.exit("bench_oblique_scaling: outputs differ between runs or worker counts")


if __name__ == "__main__":
    main()
