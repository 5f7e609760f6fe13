"""Tile builds on Dask (cim.tiling.Runner): the same bytes from the synchronous scheduler, a LocalCluster of two
workers and the machine's default cluster; a worker killed mid-build is replaced and its tiles built again; task
errors and results come back as a notebook expects."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cim.build import build_city
from cim.errors import BuildError
from cim.models.footprints import BuildingOptions
from cim.models.lod2 import build_lod2_buildings
from cim.tiling import SYNCHRONOUS, Runner, start_local_cluster

OPTIONS = BuildingOptions(tile_capacity=40)  # the small city in a dozen tiles or more
TRIM_GIVEN = "MALLOC_TRIM_THRESHOLD_" in os.environ  # before any cluster of this module started


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from cim.sample import generate

    return generate(tmp_path_factory.mktemp("sample") / "city", buildings=500, seed=11)


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    cluster = start_local_cluster(2)
    c = Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _same_tree(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    assert len([k for k in fa if k.endswith(".glb")]) >= 10
    different = [k for k in fa if k != "build.json" and fa[k] != fb[k]]
    assert not different, different
    ra, rb = json.loads(fa["build.json"]), json.loads(fb["build.json"])
    for r in (ra, rb):
        r.pop("dask"), r.pop("seconds"), r.pop("out"), r.pop("tileset")
        r["buildings"].pop("seconds"), r["buildings"].pop("stage_seconds")
        r["terrain"].pop("seconds", None)
    assert ra == rb


@pytest.fixture(scope="module")
def level2(city, client, tmp_path_factory):
    """The same level-2 build three ways: in this process, on a 2-worker LocalCluster, on the default cluster."""
    root = tmp_path_factory.mktemp("builds")
    kw = dict(dem=city.dem, ortho=city.ortho, buildings=city.buildings, dsm=city.dsm, building_options=OPTIONS)
    reports = {
        "sync": build_city(root / "sync", scheduler=SYNCHRONOUS, **kw),
        "two": build_city(root / "two", client=client, **kw),
        "default": build_city(root / "default", **kw),
    }
    return root, reports


def test_same_bytes_whatever_runs_the_tiles(level2):
    root, reports = level2
    _same_tree(root / "sync", root / "two")
    _same_tree(root / "sync", root / "default")
    assert reports["sync"].dask["scheduler"] == SYNCHRONOUS
    assert reports["two"].dask["scheduler"] == "client" and reports["two"].dask["workers"] == 2
    assert reports["default"].dask["scheduler"] == "local-cluster"
    assert reports["default"].dask["workers"] == os.cpu_count()
    tiles = reports["sync"].buildings["tiles"]
    assert tiles >= 10 and reports["two"].dask["tasks"]["lod1"] == tiles
    terrain = reports["two"].dask["tasks"]
    assert terrain["terrain-pilots"] + terrain["terrain"] == reports["sync"].terrain["tiles"] > 1  # terrain glbs too


def test_lod2_same_bytes_on_a_cluster(city, client, tmp_path):
    with Runner(scheduler=SYNCHRONOUS) as sync:
        a = build_lod2_buildings(city.buildings, city.dem, tmp_path / "a", ortho=city.ortho, dsm=city.dsm,
                                 options=OPTIONS, runner=sync)
    with Runner(client=client) as two:
        b = build_lod2_buildings(city.buildings, city.dem, tmp_path / "b", ortho=city.ortho, dsm=city.dsm,
                                 options=OPTIONS, runner=two)
    assert a.tiles == b.tiles >= 10 and a.fallback_ids == b.fallback_ids
    assert a.root.model_dump() == b.root.model_dump()
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa == fb and len(fa) == a.tiles


def test_oblique_merged_levels_same_bytes_on_a_cluster(city, client, tmp_path):
    """The oblique conversion with its merged coarse levels (one task per merged node, whose geometric error is
    measured in the task) writes the same files and the same tile tree synchronously and on two workers."""
    from cim.models.oblique import build_oblique
    from cim.sample import write_oblique

    prod = write_oblique(city, tmp_path / "production", tile_size=500.0, fmt="obj")  # 16 tiles, 5 merged nodes
    with Runner(scheduler=SYNCHRONOUS) as sync:
        a = build_oblique(prod, tmp_path / "a", runner=sync)
    merged_early: list[bool] = []  # at each converted file's arrival: is a merged node's glb written yet?

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "oblique" and done:
            merged_early.append(any((tmp_path / "b" / "oblique" / "merged").glob("*.glb")))

    with Runner(client=client, progress=progress) as two:
        b = build_oblique(prod, tmp_path / "b", runner=two)
    # the merged nodes need only the tile roots' files, which convert first: they run while other files convert
    assert len(merged_early) == b.files == 80 and merged_early[-1], merged_early
    assert a.root.model_dump() == b.root.model_dump()
    assert a.georeference == b.georeference == "EPSG:4547"  # b's named on a worker while the driver merged
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    merged = [k for k in fa if "/merged/" in k]
    assert len(merged) == 5 and fa == fb
    # the merged levels carry a measured error: above their children's, below the former guess of twice theirs
    root = a.root
    kids = max(c.geometric_error for c in root.children)
    assert kids < root.geometric_error < 2 * kids


def test_oblique_merged_levels_on_root_files_stay_above_a_child_file_that_outweighs_its_root(city, client,
                                                                                            tmp_path):
    """The merged levels are planned on the tile roots' own files (their regions' centres; their errors set the
    clustering) and start before the other files are converted, also on a 3 x 3 grid of tiles, whose middle column
    lies on the plan's split line. Here a child file of one tile has a child of its own and a mesh 8x coarser than
    before (twice its root's edges), so its error exceeds the root file's: each merged node runs once, the tile
    tree's errors still grow towards the root (the merged node over that tile declares that child's error plus its
    own deviation), and the files are those of the synchronous build."""
    from cim.models.oblique import build_oblique
    from cim.sample import write_oblique

    prod = write_oblique(city, tmp_path / "production", tile_size=700.0, fmt="obj")
    folder = sorted((prod / "Data").iterdir())[0]
    coarse = folder / f"{folder.name}_L17_00.obj"
    lines = coarse.read_text().splitlines()
    xy = np.array([[float(v) for v in line.split()[1:3]] for line in lines if line.startswith("v ")])
    mid = xy.mean(axis=0)
    out = []
    for line in lines:
        if line.startswith("v "):
            _, x, y, *rest = line.split()
            x, y = (np.array([float(x), float(y)]) - mid) * 8.0 + mid
            line = " ".join(["v", repr(float(x)), repr(float(y)), *rest])
        out.append(line)
    coarse.write_text("\n".join(out) + "\n")
    (folder / f"{folder.name}_L18_000.obj").write_bytes((folder / f"{folder.name}_L17_01.obj").read_bytes())
    with Runner(scheduler=SYNCHRONOUS) as sync:
        a = build_oblique(prod, tmp_path / "a", runner=sync)
    merged_early: list[bool] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "oblique" and done:
            merged_early.append(any((tmp_path / "b" / "oblique" / "merged").glob("*.glb")))

    with Runner(client=client, progress=progress) as two:
        b = build_oblique(prod, tmp_path / "b", runner=two)
        ran = two.describe()["tasks"]["oblique-merge"]
    assert b.tiles == 9 and ran == b.merged_contents == a.merged_contents  # each node once
    assert merged_early[-1], merged_early  # a merged glb was written before the last file arrived
    assert a.root.model_dump() == b.root.model_dump()
    assert _files(tmp_path / "a") == _files(tmp_path / "b")

    def errors_grow(tile) -> bool:
        return all(k.geometric_error <= tile.geometric_error and errors_grow(k) for k in tile.children or [])

    assert errors_grow(a.root)

    def find(tile):
        if tile.content is not None and tile.content.uri.endswith(f"{folder.name}_L16_0.glb"):
            return tile
        return next((t for t in map(find, tile.children or []) if t is not None), None)

    root = find(a.root)
    kid = next(k for k in root.children if k.content.uri.endswith("_L17_00.glb"))
    assert root.geometric_error == kid.geometric_error > max(k.geometric_error for k in root.children if k is not kid)

    def parent_of(tile, target):
        if any(k is target for k in tile.children or []):
            return tile
        return next((p for p in (parent_of(k, target) for k in tile.children or []) if p is not None), None)

    assert parent_of(a.root, root).geometric_error > kid.geometric_error  # the merged node over it declares more


def test_a_killed_worker_is_replaced_and_the_build_is_the_same(city, level2, tmp_path):
    """A worker process killed (SIGKILL) while tiles are being built: Dask runs its tiles again elsewhere."""
    from distributed import Client

    root, _ = level2
    cluster = start_local_cluster(2)
    killed: list[int] = []
    try:
        with Client(cluster, set_as_default=False) as c:
            before = set(c.run(os.getpid).values())

            def progress(stage: str, done: int, total: int) -> None:
                if stage == "lod1" and done == 1 and not killed:
                    pid = sorted(before)[0]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

            build_city(tmp_path / "killed", dem=city.dem, ortho=city.ortho, buildings=city.buildings, dsm=city.dsm,
                       building_options=OPTIONS, client=c, progress=progress)
            deadline = time.monotonic() + 30
            while len(c.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            after = set(c.run(os.getpid).values())
    finally:
        cluster.close()
    assert killed and killed[0] not in after and len(after) == 2  # the nanny started a new worker process
    _same_tree(root / "sync", tmp_path / "killed")


@pytest.mark.timeout(300)
def test_a_build_on_a_scheduler_and_workers_started_apart(city, level2, tmp_path):
    """`dask scheduler` and `dask worker` started as their own processes on loopback, as on a cluster; the build
    given the scheduler's tcp:// address writes the same bytes as the synchronous one."""
    import subprocess
    import sys

    from distributed import Client

    root, _ = level2
    info = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, "dask scheduler exited"
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                                       "--local-directory", str(tmp_path / "workers")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        with Client(address, timeout="30s", set_as_default=False) as c:
            c.wait_for_workers(2, timeout=120)
            pids = set(c.run(os.getpid).values())
        report = build_city(tmp_path / "tcp", dem=city.dem, ortho=city.ortho, buildings=city.buildings,
                            dsm=city.dsm, building_options=OPTIONS, scheduler=address)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    assert len(pids) == 2 and os.getpid() not in pids
    assert report.dask["scheduler"] == "distributed" and report.dask["address"] == address
    assert report.dask["workers"] == 2 and report.dask["tasks"]["lod1"] == report.buildings["tiles"]
    _same_tree(root / "sync", tmp_path / "tcp")


def _square(job: int, state: dict) -> int:
    time.sleep(0.05 * (5 - job) if job < 5 else 0)  # the first jobs finish last
    if job == state.get("fail"):
        raise BuildError(f"job {job} failed on purpose")
    return job * job + state["add"]


def test_results_in_job_order_and_errors_raised(client):
    jobs = list(range(8))
    seen: list[tuple[str, int, int]] = []
    with Runner(client=client, progress=lambda *a: seen.append(a)) as run:
        assert run.map(_square, jobs, {"add": 1}, stage="squares", cost=jobs) == [j * j + 1 for j in jobs]
        with pytest.raises(BuildError, match="job 3 failed on purpose"):
            run.map(_square, jobs, {"add": 1, "fail": 3})
    assert seen[:9] == [("squares", i, 8) for i in range(9)]
    with Runner(scheduler=SYNCHRONOUS) as run:
        assert run.map(_square, jobs, {"add": 0}) == [j * j for j in jobs]
        assert run.describe()["scheduler"] == SYNCHRONOUS and run.client is None
    with pytest.raises(BuildError, match="at least 1"):
        Runner(workers=0)


def _malloc_env() -> tuple[str | None, str | None]:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("PYTHONHASHSEED")


def test_local_cluster_workers_keep_glibc_malloc_defaults(client):
    # distributed's default worker environment (MALLOC_TRIM_THRESHOLD_=65536) fixes glibc's mmap threshold: every
    # tile array of over 128 KiB would fault its pages in again; the rest of its environment stays
    if TRIM_GIVEN:
        pytest.skip("the tests' own environment sets MALLOC_TRIM_THRESHOLD_ (workers inherit it)")
    seen = client.run(_malloc_env)
    assert len(seen) == 2
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # nor set in this process (distributed's nanny does that)
    assert all(trim is None and seed is not None for trim, seed in seen.values()), seen


def _pid(job, state):
    return os.getpid()


def test_a_wave_of_one_task_runs_here_even_on_a_cluster(client):
    with Runner(client=client) as run:
        assert run.map(_pid, [0], stage="one") == [os.getpid()]
        assert os.getpid() not in run.map(_pid, [0, 1], stage="two")
        assert run.describe()["batches"] == {"two": 2}


def _slow_pid(job, state):
    time.sleep(job)
    return os.getpid(), state


def test_submit_runs_on_a_worker_while_this_process_goes_on(client):
    with Runner(client=client) as run:
        t = time.perf_counter()
        pending = run.submit(_slow_pid, 2.0, "s", stage="side")
        assert time.perf_counter() - t < 1.5  # not waited for
        assert run.map(_pid, [0], stage="one") == [os.getpid()]  # this process goes on meanwhile
        pid, state = pending()
        assert pid != os.getpid() and state == "s"
        with pytest.raises(BuildError, match="job 3 failed on purpose"):
            run.submit(_square, 3, {"add": 0, "fail": 3})()
        assert run.describe()["tasks"]["side"] == 1
    calls: list[int] = []
    with Runner(scheduler=SYNCHRONOUS) as run:
        pending = run.submit(lambda job, state: calls.append(job) or os.getpid(), 7)
        assert calls == []  # run here, when its result is asked for
        assert pending() == os.getpid() and calls == [7]


def _graph_job(job, inputs, state):
    """A graph job: its name and its inputs' names; job "A" waits (up to 20 s) until job "C" has finished."""
    folder = Path(state)
    if job == "A":
        deadline = time.monotonic() + 20
        while not (folder / "C").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "A" + ("(after C)" if (folder / "C").exists() else "(C not run)") + "".join(inputs)
    (folder / job).write_text("done")
    return job + "<" + ",".join(inputs) + ">"


def test_graph_a_job_waits_for_its_own_dependencies_only(client, tmp_path):
    """C needs only B, so it runs while A (of B's level) still works, and A sees C's file; with level waves, C
    would wait for A, which waits 20 s for C. D needs both."""
    jobs, deps = ["A", "B", "C", "D"], [[], [], [1], [2, 0]]
    with Runner(client=client) as run:
        out = run.graph(_graph_job, jobs, deps, str(tmp_path), stage="g", cost=[1, 1, 1, 1])
        assert out == ["A(after C)", "B<>", "C<B<>>", "D<C<B<>>,A(after C)>"]
        assert run.describe()["tasks"]["g"] == 4
    (tmp_path / "C").unlink()
    with Runner(scheduler=SYNCHRONOUS) as run:  # here, in job order
        assert run.graph(_graph_job, ["B", "C"], [[], [0]], str(tmp_path)) == ["B<>", "C<B<>>"]
        with pytest.raises(BuildError, match="listed before it"):
            run.graph(_graph_job, ["B", "C"], [[1], []], str(tmp_path))


def _graph_pid(job, inputs, state):
    return os.getpid()


def test_graph_runs_every_job_on_a_worker_the_top_included(client):
    with Runner(client=client) as run:
        pids = run.graph(_graph_pid, [0, 1, 2], [[], [], [0, 1]], stage="tree")
        assert os.getpid() not in pids
        assert run.describe()["batches"] == {"tree": 3}


def _wave_job(job, state):
    """A wave's job: "slow" waits (up to 20 s) until the graph job "node" has left its mark."""
    folder = Path(state)
    if job == "slow":
        deadline = time.monotonic() + 20
        while not (folder / "node").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "slow" + ("(after node)" if (folder / "node").exists() else "(node not run)")
    return job


def test_a_graph_job_starts_when_the_wave_job_it_needs_is_done_not_the_wave(client, tmp_path):
    """"node" needs only the wave's "root" (a job run first, in a task of its own), so it runs while "slow" still
    works and "slow" sees its mark; a graph started after the whole wave would leave "slow" waiting 20 s."""
    with Runner(client=client) as run:
        wave = run.start(_wave_job, ["slow", "root"], str(tmp_path), stage="w", first=[1])
        assert wave.result(1) == "root" and wave.pending == 1
        node = run.start_graph(_graph_job, ["node"], [[wave.ref(1)]], str(tmp_path), stage="g")
        assert wave.results() == ["slow(after node)", "root"]
        assert node.results() == ["node<root>"]
        assert run.describe()["batches"] == {"w": 2, "g": 1}
    with Runner(scheduler=SYNCHRONOUS) as run:  # here, in order
        (tmp_path / "node").unlink()
        wave = run.start(_wave_job, ["root", "x"], str(tmp_path), stage="w", first=[0])
        assert wave.pending == 0
        assert run.graph(_graph_job, ["node"], [[wave.ref(1)]], str(tmp_path)) == ["node<x>"]


def test_graph_resumes_from_a_manifest_with_the_recorded_results(tmp_path):
    from cim.tiling import Manifest

    folder = tmp_path / "marks"
    folder.mkdir()
    with Manifest(tmp_path / "m", "x") as m, Runner(scheduler=SYNCHRONOUS, manifest=m) as run:
        assert run.graph(_graph_job, ["B", "C"], [[], [0]], str(folder)) == ["B<>", "C<B<>>"]
    (folder / "B").unlink()
    with Manifest(tmp_path / "m", "x") as m, Runner(scheduler=SYNCHRONOUS, manifest=m) as run:
        # B and C recorded: not run again; D runs on C's recorded result
        assert run.graph(_graph_job, ["B", "C", "D"], [[], [0], [1]], str(folder))[2] == "D<C<B<>>>"
        assert run.describe()["resumed"] == {"tiles": 2} and not (folder / "B").exists()


def test_batches_are_consecutive_balanced_and_cover_every_job():
    from cim.tiling import batches

    assert batches([5.0, 1.0, 2.0], workers=2, per_worker=2) == [[0], [1], [2]]  # a small wave: one job a task
    rng = np.random.default_rng(3)
    cost = rng.integers(1, 1000, 5000).astype(float)
    groups = batches(cost, workers=16, per_worker=8)
    assert [i for g in groups for i in g] == list(range(5000))  # every job once, in order
    assert 100 <= len(groups) <= 128
    sums = np.array([cost[g].sum() for g in groups])
    assert sums.max() <= cost.sum() / 128 + cost.max()  # a batch's share, plus at most the job that crosses it
    # a job costlier than a share fills its batch (with its neighbours at most); zero costs still advance
    assert batches([0, 0, 100, 0, 0, 0], workers=1, per_worker=3) == [[0, 1, 2], [3, 4, 5]]
    assert batches([float("nan")] * 10, workers=1, per_worker=5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    # a wave of small total cost: fewer tasks a worker (never fewer than one a worker), the same order
    small = [1.0] * 40
    assert len(batches(small, workers=2, per_worker=8, min_cost=10.0)) == 4  # 40 / (10 x 2) = 2 a worker
    assert len(batches(small, workers=2, per_worker=8, min_cost=1000.0)) == 2
    assert len(batches(small, workers=2, per_worker=8, min_cost=0.5)) == 16  # no more than per_worker
    assert sum(batches(small, workers=2, per_worker=8, min_cost=10.0), []) == list(range(40))


def test_many_jobs_run_as_batches_in_order_and_recorded_one_by_one(client, tmp_path):
    from cim.tiling import Manifest

    jobs = list(range(40))
    seen: list[tuple[str, int, int]] = []
    with Manifest(tmp_path / "m", "x") as m, Runner(client=client, tasks_per_worker=2, manifest=m,
                                                    progress=lambda *a: seen.append(a)) as run:
        assert run.map(_square, jobs, {"add": 1}, stage="squares", cost=jobs) == [j * j + 1 for j in jobs]
        assert run.describe()["tasks"] == {"squares": 40} and run.describe()["batches"] == {"squares": 4}
        with pytest.raises(BuildError, match="job 33 failed on purpose"):
            run.map(_square, jobs, {"add": 1, "fail": 33}, stage="again")
    assert [d for _, d, _ in seen[:41]] == list(range(41))  # progress job by job
    with Manifest(tmp_path / "m", "x") as m, Runner(scheduler=SYNCHRONOUS, manifest=m) as run:
        assert run.map(_square, jobs, {"add": 1}, stage="squares") == [j * j + 1 for j in jobs]
        assert run.describe()["resumed"] == {"squares": 40}  # every job of every batch was recorded
    with pytest.raises(BuildError, match="tasks_per_worker=0"):
        Runner(tasks_per_worker=0)


def test_batched_tiles_and_files_write_the_same_bytes(city, client, tmp_path):
    """LOD1 tiles and oblique files run several to a Dask task (one task per worker forced) write what the
    synchronous build writes."""
    from cim.models.lod1 import build_buildings
    from cim.models.oblique import build_oblique
    from cim.sample import write_oblique

    with Runner(scheduler=SYNCHRONOUS) as sync:
        a = build_buildings(city.buildings, city.dem, tmp_path / "a", dsm=city.dsm, options=OPTIONS, runner=sync)
    with Runner(client=client, tasks_per_worker=1) as two:
        b = build_buildings(city.buildings, city.dem, tmp_path / "b", dsm=city.dsm, options=OPTIONS, runner=two)
        assert two.describe()["batches"]["lod1"] == 2 < a.tiles
    assert a.root.model_dump() == b.root.model_dump()
    fa = _files(tmp_path / "a")
    assert fa == _files(tmp_path / "b") and len(fa) >= 10
    prod = write_oblique(city, tmp_path / "production", tile_size=500.0, fmt="obj")
    with Runner(scheduler=SYNCHRONOUS) as sync:
        oa = build_oblique(prod, tmp_path / "oa", runner=sync)
    with Runner(client=client, tasks_per_worker=1) as two:
        ob = build_oblique(prod, tmp_path / "ob", runner=two)
        # the tiles' root files in tasks of their own (one a worker), the other files in one task a worker
        assert two.describe()["batches"]["oblique"] == 2 + 2 < two.describe()["tasks"]["oblique"]
    assert oa.root.model_dump() == ob.root.model_dump()
    assert _files(tmp_path / "oa") == _files(tmp_path / "ob")


def test_cli_workers_and_synchronous(city, level2, tmp_path):
    from cim.cli import app

    root, _ = level2
    base = ["build", "--dem", str(city.dem), "--ortho", str(city.ortho), "--buildings", str(city.buildings),
            "--dsm", str(city.dsm), "--json"]
    res = CliRunner().invoke(app, [*base[:1], str(tmp_path / "sync"), *base[1:], "--scheduler", "synchronous"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["dask"]["scheduler"] == SYNCHRONOUS
    res = CliRunner().invoke(app, [*base[:1], str(tmp_path / "w2"), *base[1:], "--workers", "2"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)["dask"]
    assert d["workers"] == 2 and d["tasks"]["lod1"] >= 1
    assert _files(tmp_path / "sync").keys() == _files(tmp_path / "w2").keys()
    assert {k: v for k, v in _files(tmp_path / "sync").items() if k != "build.json"} == \
        {k: v for k, v in _files(tmp_path / "w2").items() if k != "build.json"}


KILLED_BUILD = """
import sys, time
from cim.build import build_city
from cim.models.footprints import BuildingOptions

def slow(stage, done, total):
    if stage == "lod1" and done:
        time.sleep(0.3)  # slow the driver down so the test can kill it between two tiles

out, dem, ortho, buildings, dsm = sys.argv[1:]
build_city(out, dem=dem, ortho=ortho, buildings=buildings, dsm=dsm, building_options=BuildingOptions(tile_capacity=40),
           scheduler="synchronous", progress=slow)
"""


def test_a_killed_build_resumes_to_the_same_bytes(city, level2, tmp_path):
    import subprocess
    import sys

    root, reports = level2
    out = tmp_path / "model"
    work = tmp_path / ".model.building"
    args = [str(out), str(city.dem), str(city.ortho), str(city.buildings), str(city.dsm)]
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, *args])
    deadline = time.monotonic() + 300
    try:
        while len(list((work / "buildings").glob("*.glb"))) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists() and (work / ".cim-manifest").is_file()
    done_before = len(list((work / "buildings").glob("*.glb")))
    report = build_city(out, dem=city.dem, ortho=city.ortho, buildings=city.buildings, dsm=city.dsm,
                        building_options=OPTIONS, scheduler=SYNCHRONOUS)
    tiles = reports["sync"].buildings["tiles"]
    assert 4 <= report.dask["resumed"]["lod1"] <= done_before < tiles  # finished tiles were not built again
    assert not work.exists() and not list(out.rglob(".*"))
    _same_tree(root / "sync", out)


KILLED_TERRAIN = """
import sys, time
from pathlib import Path
from cim.build import build_city
from cim.models.footprints import BuildingOptions

def hold(stage, done, total):
    if stage == "terrain" and done == 2:  # the pilots and two of the other terrain tiles are recorded
        Path(sys.argv[6]).touch()
        time.sleep(120)  # the test kills the build here

out, dem, ortho, buildings, dsm = sys.argv[1:6]
build_city(out, dem=dem, ortho=ortho, buildings=buildings, dsm=dsm, building_options=BuildingOptions(tile_capacity=40),
           scheduler="synchronous", progress=hold)
"""


def test_a_build_killed_after_the_terrain_pilots_resumes_to_the_same_bytes(city, level2, tmp_path):
    """The terrain's other tiles start from the quality its pilot tiles chose (`_write_tiles`): killed after the
    pilot wave, the resumed build takes the pilots' choices from the manifest and writes the bytes of a build never
    killed (tiles written before and after the kill alike)."""
    import subprocess
    import sys

    root, reports = level2
    out, mark = tmp_path / "model", tmp_path / "killed-here"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_TERRAIN, str(out), str(city.dem), str(city.ortho),
                             str(city.buildings), str(city.dsm), str(mark)])
    deadline = time.monotonic() + 300
    try:
        while not mark.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    report = build_city(out, dem=city.dem, ortho=city.ortho, buildings=city.buildings, dsm=city.dsm,
                        building_options=OPTIONS, scheduler=SYNCHRONOUS)
    pilots = reports["sync"].dask["tasks"]["terrain-pilots"]
    assert pilots >= 1 and report.dask["resumed"]["terrain-pilots"] == pilots
    assert report.dask["resumed"]["terrain"] == 2 < reports["sync"].dask["tasks"]["terrain"]
    _same_tree(root / "sync", out)


@dataclass
class Part:  # a job's part like the terrain's TINs (module level: pickled)
    verts: np.ndarray
    tris: np.ndarray
    error: float


def test_task_keys_name_a_jobs_content_not_how_it_was_built():
    """A job made from results read back from a manifest gets the key of the equal job made in the run that was
    killed: pickle's bytes differ between the two (two arrays sharing one dtype object, or each with its own), the
    key must not; any change of content changes it."""
    import pickle

    from cim.tiling import task_key

    verts, tris = np.arange(12).reshape(4, 3), np.arange(6).reshape(2, 3)
    built = (("0", 1), Part(verts, tris, 0.5), Path("a/b"), {"q": np.int64(3)})
    read_back = (("0", 1), Part(pickle.loads(pickle.dumps(verts)), pickle.loads(pickle.dumps(tris)), 0.5), Path("a/b"),
                 {"q": np.int64(3)})
    assert pickle.dumps(built, protocol=4) != pickle.dumps(read_back, protocol=4)
    assert task_key("terrain", built) == task_key("terrain", read_back)
    assert task_key("terrain", built) != task_key("lod1", built)
    for other in [(("0", 2), *built[1:]), (built[0], Part(verts, tris, 0.25), *built[2:]),
                  (built[0], Part(verts.astype(np.int32), tris, 0.5), *built[2:]),
                  (built[0], Part(verts.reshape(3, 4), tris, 0.5), *built[2:]), (*built[:3], {"q": np.int32(3)})]:
        assert task_key("terrain", other) != task_key("terrain", built)


def test_a_manifest_of_another_build_or_torn_is_not_trusted(tmp_path):
    from cim.tiling import Manifest, task_key

    path = tmp_path / "m"
    with Manifest(path, "build A") as m:
        for i in range(3):
            m.record(task_key("lod1", ("0", i)), {"tile": i})
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # the last record cut short by a kill
    with Manifest(path, "build A") as m:
        assert m.resumed == 2 and task_key("lod1", ("0", 1)) in m and task_key("lod1", ("0", 2)) not in m
        assert m.result(task_key("lod1", ("0", 0))) == {"tile": 0}
    assert Manifest(path, "build A").matches() and not Manifest(path, "build B").matches()
    with Manifest(path, "build B") as m:
        assert len(m) == 0 and m.resumed == 0
    seen = []
    with Manifest(tmp_path / "r", "x") as m, Runner(scheduler=SYNCHRONOUS, manifest=m) as run:
        assert run.map(_square, [1, 2], {"add": 0}) == [1, 4]
    with Manifest(tmp_path / "r", "x") as m, Runner(scheduler=SYNCHRONOUS, manifest=m,
                                                    progress=lambda *a: seen.append(a)) as run:
        assert run.map(_square, [1, 2, 3], {"add": 0}) == [1, 4, 9]  # 1 and 2 come from the manifest
        assert run.describe()["resumed"] == {"tiles": 2}
    assert seen == [("tiles", 2, 3), ("tiles", 3, 3)]


def test_the_shared_cluster_closes_when_asked_and_a_later_build_starts_another():
    """`cim demo` closes its builds' cluster before the storm and the serving (close_shared_clusters)."""
    from cim.tiling import close_shared_clusters, shared_clusters

    with Runner(workers=1) as run:
        assert run.map(_square, [1, 2, 3], {"add": 1}) == [2, 5, 10]
        cluster = shared_clusters()[-1]
    kept = [c for c in shared_clusters() if c is not cluster]
    assert close_shared_clusters(keep=kept) == 1
    assert cluster.status.name in ("closed", "closing") and not any(c is cluster for c in shared_clusters())
    with Runner(workers=1) as run:
        assert run.map(_square, [4], {"add": 0}) == [16]
        again = shared_clusters()[-1]
    assert again is not cluster and again.status.name == "running"
    close_shared_clusters(keep=kept)
