"""The tile quadtree, and the runner that executes every model builder's tile tasks on Dask.

A building model is tiled as an ADD-refinement quadtree over footprint centroids (`quadtree`, `walk`): each
node shows its most prominent buildings and hands the rest to its quadrants. Each tile is one job (mesh, encode,
write its glb; consecutive jobs run as one Dask task when a wave has many: `batches`) executed by `Runner` with
`dask.distributed`: on a `LocalCluster` it starts (`workers=N`), on an
existing cluster (`scheduler="tcp://host:8786"`, or a notebook's `distributed.Client`), or in this process
(`scheduler="synchronous"`). Results come back in job order, so the output is the same bytes whatever the
scheduler or the number of workers. `nest_tiles` links the written tiles into one subtree with volumes grown upward.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import pickle
import struct
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from cim.errors import BuildError
from cim.geodesy import union_regions
from tiles.tileset import BoundingVolume, Tile

Progress = Callable[[str, int, int], None]


@dataclass
class QuadNode:
    bounds: tuple[float, float, float, float]
    content: np.ndarray  # building indices shown by this tile
    children: list[QuadNode]
    error: float  # size of the largest building left to descendants


def quadtree(cx: np.ndarray, cy: np.ndarray, size: np.ndarray, idx: np.ndarray,
             bounds: tuple[float, float, float, float], capacity: int, depth: int = 0) -> QuadNode:
    """ADD-refinement quadtree: each node shows its `capacity` largest buildings, children the rest."""
    order = idx[np.argsort(-size[idx], kind="stable")]
    content, rest = order[:capacity], order[capacity:]
    node = QuadNode(bounds, content, [], float(size[rest].max()) if len(rest) else 0.0)
    if len(rest) == 0:
        return node
    if depth >= 24:  # all centroids coincide: keep the rest here
        node.content, node.error = order, 0.0
        return node
    if len(rest) <= capacity // 2:  # four thin tiles would cost more than they save
        node.children.append(quadtree(cx, cy, size, rest, bounds, capacity, depth + 1))
        return node
    x0, y0, x1, y1 = bounds
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    east = cx[rest] >= mx
    north = cy[rest] >= my
    for qe, qn, qb in ((False, False, (x0, y0, mx, my)), (True, False, (mx, y0, x1, my)),
                       (False, True, (x0, my, mx, y1)), (True, True, (mx, my, x1, y1))):
        sel = rest[(east == qe) & (north == qn)]
        if len(sel):
            node.children.append(quadtree(cx, cy, size, sel, qb, capacity, depth + 1))
    return node


@dataclass
class ImplicitNode:
    """A tile of an implicit quadtree of buildings: its coordinates, the buildings it shows, the size of the
    largest building it leaves to its descendants."""

    level: int
    x: int
    y: int
    content: np.ndarray
    error: float


def implicit_quadtree(box: np.ndarray, size: np.ndarray, root: tuple[float, float, float, float], capacity: int,
                      max_level: int = 20) -> list[ImplicitNode]:
    """ADD-refinement quadtree whose tiles are the cells of the implicit subdivision of `root`.

    A building goes down into a quadrant only when its box lies inside it whole; the buildings across a cell's
    midlines stay in the cell. So every tile's content lies inside the cell implicit tiling implies for it
    (`tiles.implicit.implied_region`), with no per-tile volume. Each cell shows those buildings plus the largest
    others up to `capacity`; what remains goes to the quadrants (kept here when it is at most half a tile).

    Args:
        box: (k, 4) float64 [west, south, east, north] of each building, in the root's units.
        size: (k,) float64 prominence (larger first).
        root: the root cell [west, south, east, north]; must contain every box.
        capacity: buildings per tile (more where more buildings cross a cell's midlines).
        max_level: the deepest level (everything left there stays).

    Returns:
        The tiles, root first, then depth first in quadrant order (south-west, south-east, north-west, north-east).
    """
    w, s, e, n = root
    out: list[ImplicitNode] = []

    def split(level: int, x: int, y: int, idx: np.ndarray) -> None:
        order = idx[np.argsort(-size[idx], kind="stable")]
        if len(order) <= capacity or level >= max_level:
            out.append(ImplicitNode(level, x, y, order, 0.0))
            return
        cells = 1 << (level + 1)
        # the same expression as the implied volumes' (spec: computed per level, not by repeated halving)
        mx = w + (e - w) / cells * (2 * x + 1)
        my = s + (n - s) / cells * (2 * y + 1)
        b = box[order]
        east, west = b[:, 0] >= mx, b[:, 2] <= mx
        north, south = b[:, 1] >= my, b[:, 3] <= my
        across = ~((east | west) & (north | south))
        free = np.flatnonzero(~across)
        room = max(capacity - int(across.sum()), 0)
        keep = np.zeros(len(order), bool)
        keep[across] = True
        keep[free[:room]] = True
        if (~keep).sum() <= capacity // 2:  # four thin tiles would cost more than they save
            keep[:] = True
        rest = ~keep
        node = ImplicitNode(level, x, y, order[keep], float(size[order[rest]].max()) if rest.any() else 0.0)
        out.append(node)
        for qe, qn in ((False, False), (True, False), (False, True), (True, True)):
            sel = rest & (east == qe) & (north == qn)
            if sel.any():
                split(level + 1, 2 * x + qe, 2 * y + qn, order[sel])

    split(0, 0, 0, np.arange(len(size)))
    return out


def walk(node: QuadNode, path: str = "0") -> Iterator[tuple[QuadNode, str]]:
    yield node, path
    for k, child in enumerate(node.children):
        yield from walk(child, f"{path}{k}")



class Manifest:
    """The finished tasks of one build, so a build that was killed resumes where it stopped.

    One record per finished task, appended (and flushed) as its result arrives: the task's key (its stage and a
    digest of its job) and its pickled result. A task's files are complete before its result exists (tasks write
    to a temporary name and rename), so a recorded task need not run again. The first record is the build's
    fingerprint (its inputs and options); a manifest of another build is ignored. A record cut short by a kill is
    dropped when the manifest is opened again.
    """

    def __init__(self, path: str | os.PathLike[str], fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._results: dict[str, Any] = {}
        self._file: Any = None
        self._resumed = 0

    def open(self) -> Manifest:
        """Read the records of an earlier run of the same build (if any) and start appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records = _read_records(self.path) if self.path.exists() else []
        if records and records[0] == ("fingerprint", self.fingerprint):
            self._results = dict(records[1:])
            self._resumed = len(self._results)
        else:
            self._results = {}
            records = [("fingerprint", self.fingerprint)]
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        for key, value in [records[0], *self._results.items()]:
            self._write(key, value)
        return self

    def matches(self) -> bool:
        """Whether the manifest on disk is one of this build (same fingerprint)."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(8)
                (n,) = struct.unpack("<Q", head)
                return pickle.loads(fh.read(n)) == ("fingerprint", self.fingerprint)
        except Exception:  # noqa: BLE001 - missing, empty or damaged: not this build's
            return False

    @property
    def resumed(self) -> int:
        """How many finished tasks were read back when the manifest was opened."""
        return self._resumed

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Manifest:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self._results

    def __len__(self) -> int:
        return len(self._results)

    def result(self, key: str) -> Any:
        return self._results[key]

    def record(self, key: str, result: Any) -> None:
        """Add a finished task."""
        self._results[key] = result
        if self._file is not None:
            self._write(key, result)

    def _write(self, key: str, value: Any) -> None:
        blob = pickle.dumps((key, value), protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(struct.pack("<Q", len(blob)) + blob)
        self._file.flush()


def _read_records(path: Path) -> list[tuple[str, Any]]:
    data = path.read_bytes()
    out = []
    at = 0
    while at + 8 <= len(data):
        (n,) = struct.unpack_from("<Q", data, at)
        if at + 8 + n > len(data):
            break  # the last record was cut short by a kill
        try:
            out.append(pickle.loads(data[at + 8:at + 8 + n]))
        except Exception:  # noqa: BLE001 - a damaged record: keep what came before it
            break
        at += 8 + n
    return out


def task_key(stage: str, job: Any) -> str:
    """A task's name in a manifest: its stage and a digest of its job's content (equal jobs, the same key).

    Not a digest of the job's pickle: pickle writes a sub-object shared by two parts once and refers to it after, so
    equal jobs pickle differently when one was built in this run (two arrays sharing one dtype object) and the other
    from results read back from the manifest (each array with a dtype of its own): a resumed build then found none
    of the terrain's glb tasks its killed run had finished."""
    h = hashlib.blake2b(digest_size=16)
    _digest(h, job)
    return f"{stage}/{h.hexdigest()}"


def _digest(h: Any, obj: Any) -> None:
    """Feed `obj`'s content, not its object identities, into the hash `h`: numbers, text, arrays (dtype, shape and
    bytes), tuples, lists, dicts, paths and dataclasses by their parts; anything else by its pickle."""
    if obj is None or isinstance(obj, (bool, int, float, complex, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (bytes, bytearray)):
        h.update(f"bytes:{len(obj)};".encode())
        h.update(obj)
    elif isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
        dtype = repr(obj.dtype.descr) if obj.dtype.fields else obj.dtype.str
        h.update(f"ndarray:{dtype}:{obj.shape};".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, np.generic) and not obj.dtype.hasobject:
        h.update(f"{type(obj).__name__}:{obj.dtype.str};".encode())
        h.update(obj.tobytes())
    elif isinstance(obj, (tuple, list)):
        h.update(f"{type(obj).__name__}:{len(obj)}[".encode())
        for item in obj:
            _digest(h, item)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)}{{".encode())
        for key, value in obj.items():
            _digest(h, key)
            _digest(h, value)
        h.update(b"}")
    elif isinstance(obj, PurePath):
        h.update(f"{type(obj).__name__}:{obj.as_posix()};".encode())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        names = sorted(vars(obj)) if hasattr(obj, "__dict__") else [f.name for f in dataclasses.fields(obj)]
        for name in names:
            _digest(h, name)
            _digest(h, getattr(obj, name))
        h.update(b")")
    else:
        h.update(b"pickle:")
        h.update(pickle.dumps(obj, protocol=4))


SYNCHRONOUS = "synchronous"
TASKS_PER_WORKER = 8  # Dask tasks per worker in a wave of many small jobs (see `batches`)
WORKER_ENV_UNSET = ("MALLOC_TRIM_THRESHOLD_",)  # distributed's worker environment left out (start_local_cluster)
_shared: dict[int, Any] = {}
_shared_lock = threading.Lock()


def _shared_cluster(n: int) -> Any:
    """One LocalCluster per process and worker count, started on first use and closed at exit.

    Starting worker processes takes seconds; a notebook or a test session building several cities reuses them.
    """
    with _shared_lock:
        cluster = _shared.get(n)
        if cluster is None or cluster.status.name in ("closed", "closing", "failed"):
            cluster = start_local_cluster(n)
            _shared[n] = cluster
        return cluster


def start_local_cluster(n: int) -> Any:
    """A `distributed.LocalCluster` of `n` single-threaded worker processes on the loopback interface.

    Its dashboard (on a free port) is served when bokeh is installed. The caller closes it.

    The workers keep glibc's own malloc settings: distributed sets `MALLOC_TRIM_THRESHOLD_=65536` in its workers'
    environment by default, which also freezes glibc's mmap threshold at 128 KiB, so every array of a tile task
    larger than that is a fresh mapping whose pages fault in again (20x the page faults of the same tiles built in
    this process; docs/benchmarks.md "Against the fork pool"). A tile task's memory is set by its tile, so
    memory given back at the end of each task is not needed.
    """
    import dask.config
    from distributed import LocalCluster

    try:
        import bokeh  # noqa: F401  (the dashboard needs it)

        dashboard: str | None = "127.0.0.1:0"
    except ImportError:
        dashboard = None
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": None for name in WORKER_ENV_UNSET}):
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=dashboard, silence_logs=logging.ERROR)


def shared_clusters() -> list[Any]:
    """The local clusters that `Runner`s started in this process and that are still open."""
    with _shared_lock:
        return [c for c in _shared.values() if c.status.name not in ("closed", "closing", "failed")]


def close_shared_clusters(keep: Collection[Any] = ()) -> int:
    """Close the local clusters `Runner`s started in this process, except those in `keep`; returns how many.

    Their worker processes hold memory and a core's attention until closed; a program that builds and then goes on
    to other work (`cim demo` builds, then runs a storm and serves) closes them after its builds. A later build
    starts a new one.
    """
    with _shared_lock:
        gone = [(n, c) for n, c in _shared.items() if not any(c is k for k in keep)]
        for n, _ in gone:
            del _shared[n]
    for _, cluster in gone:
        with contextlib.suppress(Exception):
            cluster.close()
    return len(gone)


@atexit.register
def _close_shared() -> None:
    close_shared_clusters()


PRIORITY_BAND = 1_000_000  # Dask priority of one level of `priority` (Runner.start, start_graph, submit)


@dataclass(frozen=True)
class Ref:
    """Job `index` of a started `Wave`: what a `Runner.start_graph` job lists to take that job's result."""

    wave: Wave
    index: int


class Wave:
    """Jobs started by `Runner.start` or `Runner.start_graph` whose results are asked for later: one job's
    (`result`, as soon as its task is done) or all of them in job order (`results`). A failed task cancels the
    others and raises from either."""

    def __init__(self, stage: str, keys: list[str], values: list[Any], todo: list[int],
                 finished: Callable[[int, Any], None]) -> None:
        self.stage = stage
        self.keys = keys  # manifest keys (none without a manifest)
        self.values = values
        self._pending = set(todo)
        self._finished = finished
        self._client: Any = None
        self._futures: dict[Any, list[int]] = {}  # a task's future -> its jobs
        self._where: dict[int, tuple[Any, int | None]] = {}  # a job -> its task's future, its place in a batch
        self._shared: Any = None

    def finished(self, i: int, value: Any) -> None:
        self._pending.discard(i)
        self._finished(i, value)

    def running(self, client: Any, futures: dict[Any, list[int]], shared: Any, *, single: bool) -> None:
        """The Dask tasks that run the pending jobs (`single`: one job each, else batches returning lists)."""
        self._client, self._shared = client, shared
        self._futures = dict(futures)
        for fut, group in futures.items():
            for k, i in enumerate(group):
                self._where[i] = (fut, None if single else k)

    @property
    def pending(self) -> int:
        """Jobs whose results are not here yet."""
        return len(self._pending)

    def ref(self, i: int) -> Ref:
        return Ref(self, i)

    def handle(self, i: int) -> tuple[Any, int | None]:
        """What a task takes for job `i`: (its result, None) once it is here, else (its task's future, its place
        in that task's list of results, or None for a task of one job)."""
        if i not in self._pending:
            return self.values[i], None
        return self._where[i]

    def result(self, i: int) -> Any:
        """Job `i`'s result, waiting for its task only."""
        if i in self._pending:
            self._collect([self._where[i][0]])
        return self.values[i]

    def results(self) -> list[Any]:
        """Every job's result in job order, waiting for all of them."""
        try:
            if self._pending:
                from distributed import as_completed

                self._collect(as_completed(list(self._futures), loop=self._client.loop))
        finally:
            self._release()
        return self.values

    def _collect(self, futures: Any) -> None:
        from distributed.scheduler import KilledWorker

        try:
            for fut in futures:
                group = self._futures.pop(fut, None)
                if group is None:  # collected before (`result`)
                    continue
                try:
                    value = fut.result()
                except KilledWorker as exc:
                    raise BuildError(f"stage {self.stage}: a task killed its worker process more often than the "
                                     f"scheduler allows (out of memory? a crash in a native library?): {exc}; "
                                     f"run with fewer --workers or smaller tiles") from exc
                fut.release()  # a graph task started on it keeps its result on the cluster until it has run
                for i, v in zip(group, value if self._where[group[0]][1] is not None else [value], strict=True):
                    self.finished(i, v)
        except BaseException:
            self._client.cancel(list(self._futures))
            self._release()
            raise

    def _release(self) -> None:
        for fut in self._futures:
            fut.release()
        self._futures = {}
        if self._shared is not None:
            self._shared.release()
            self._shared = None


class Runner:
    """Executes the tile tasks of a build with Dask.

    Args:
        workers: worker processes of the local cluster (`distributed.LocalCluster`) the runner starts, or reuses
            if this process started one of that size before; None -> one per CPU core. Ignored with `scheduler`
            or `client`.
        scheduler: "synchronous" runs every task in this process, one after the other (no cluster), or the
            address of a running Dask scheduler ("tcp://10.0.0.5:8786") whose workers see the inputs and the
            output folder at the same paths.
        client: a `distributed.Client` to run on as it is (a notebook's, a cluster's); it is not closed.
        progress: called as progress(stage, done, total) as tasks finish.
        on_start: called with `describe()` once the runner is connected to its cluster (its dashboard link).
        manifest: where finished tasks are recorded and looked up (a resumable build); None keeps nothing.
        tasks_per_worker: a wave of many jobs runs as about this many Dask tasks per worker, each a batch of
            consecutive jobs (`batches`); the output is the same bytes for any value.

    Use as a context manager. Given `workers` or a scheduler address, it connects on entry; otherwise the local
    cluster is started when a wave of more than one task first needs it (a wave of one task runs in this process,
    which is what a cluster would do at more cost). The
    output never depends on the scheduler, the number of workers or the order in which tasks finish: `map`
    returns results in the order of its jobs.
    """

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None, client: Any = None,
                 progress: Progress | None = None,
                 on_start: Callable[[dict[str, Any]], None] | None = None,
                 manifest: Manifest | None = None, tasks_per_worker: int = TASKS_PER_WORKER) -> None:
        if workers is not None and workers < 1:
            raise BuildError(f"workers={workers}: give at least 1 worker process")
        if tasks_per_worker < 1:
            raise BuildError(f"tasks_per_worker={tasks_per_worker}: give at least 1")
        self.tasks_per_worker = tasks_per_worker
        self.batched: dict[str, int] = {}
        self.workers = workers
        self.scheduler = scheduler
        self.progress = progress
        self.on_start = on_start
        self.manifest = manifest
        self.resumed: dict[str, int] = {}
        self._client = client
        self._own_client = False
        self._started = client is not None
        self.counts: dict[str, int] = {}

    def __enter__(self) -> Runner:
        if self.workers is not None or (self.scheduler and self.scheduler != SYNCHRONOUS):
            self._connect()
        return self

    def _connect(self) -> Any:
        """The client, connecting to the scheduler (or starting the local cluster) on first use."""
        if self._client is None and self.scheduler != SYNCHRONOUS:
            from distributed import Client

            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, timeout="20s", set_as_default=False)
                except (OSError, TimeoutError) as exc:
                    raise BuildError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}; start one with "
                                     f"`dask scheduler` (and `dask worker {self.scheduler}` on each machine), or "
                                     f"leave out --scheduler for a local cluster") from exc
            else:
                n = self.workers or os.cpu_count() or 1
                self._client = Client(_shared_cluster(n), set_as_default=False)
            self._own_client = True
        if not self._started and self._client is not None:
            self._started = True
            if self.on_start is not None:
                self.on_start(self.describe())
        return self._client

    def __exit__(self, *exc: object) -> None:
        if self._own_client and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None
        self._own_client = False

    @property
    def client(self) -> Any:
        """The `distributed.Client` tasks are submitted to (None when they run in this process)."""
        return self._client

    @property
    def dashboard(self) -> str | None:
        """The Dask dashboard's address when a cluster is used and serves one."""
        if self._client is None:
            return None
        try:
            link = self._client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard (no bokeh on the scheduler)
            return None
        return link or None

    def describe(self) -> dict[str, Any]:
        """What runs the build: scheduler kind and address, worker count, dashboard, jobs (tiles, partitions, ...)
        per stage (`tasks`), the Dask tasks they ran as (`batches`, stages run on a cluster) and those taken from
        the manifest (`resumed`)."""
        if self._client is None:
            kind, n, address = (SYNCHRONOUS if self.scheduler == SYNCHRONOUS else "not started"), 1, None
        else:
            kind = "distributed" if self.scheduler else ("local-cluster" if self._own_client else "client")
            address = self._client.scheduler.address if self._client.scheduler is not None else None
            try:
                n = len(self._client.scheduler_info(n_workers=-1)["workers"])
            except Exception:  # noqa: BLE001 - a closing scheduler
                n = 0
        return {"scheduler": kind, "address": address, "workers": n, "dashboard": self.dashboard,
                "tasks": dict(self.counts), "batches": dict(self.batched), "resumed": dict(self.resumed)}

    def _resume(self, stage: str, keys: list[str], n: int) -> tuple[list[Any], list[int],
                                                                   Callable[[int, Any], None]]:
        """The bookkeeping `map` and `graph` share: the results of `n` jobs (those the manifest lists by `keys`
        filled in), the indices still to run, and `finished(i, value)`, which stores, records and reports a result."""
        results: list[Any] = [None] * n
        todo = list(range(n))
        if self.manifest is not None:
            todo = [i for i in todo if keys[i] not in self.manifest]
            for i in set(range(n)) - set(todo):
                results[i] = self.manifest.result(keys[i])
            self.resumed[stage] = self.resumed.get(stage, 0) + n - len(todo)
        done = n - len(todo)
        if self.progress:
            self.progress(stage, done, n)

        def finished(i: int, value: Any) -> None:
            nonlocal done
            results[i] = value
            if self.manifest is not None:
                self.manifest.record(keys[i], value)
            done += 1
            if self.progress:
                self.progress(stage, done, n)

        return results, todo, finished

    def map(self, fn: Callable[[Any, Any], Any], jobs: Sequence[Any], state: Any = None, *, stage: str = "tiles",
            cost: Sequence[float] | None = None, min_task_cost: float = 0.0) -> list[Any]:
        """`fn(job, state)` for every job, as Dask tasks; results in the order of `jobs`.

        On a cluster, a wave of more jobs than `tasks_per_worker` x workers runs as that many Dask tasks, each
        a batch of consecutive jobs (`batches`): the scheduler's cost per task, not the workers, would otherwise
        set the wall time of a wave of small tiles on many workers.
        `state` (the build's shared arrays) is sent to every worker once, not once per task. `fn` must be a
        module-level function (workers import it) that writes the same bytes whenever it runs, so a task a dead
        worker left unfinished can be run again elsewhere (Dask does that by itself). `cost` starts the costliest
        tasks first, and with `min_task_cost` (in the unit of `cost`) a wave of small total cost runs as fewer,
        larger tasks (`batches`). With a `manifest`, jobs it lists as finished (`task_key`) are not run again: their
        recorded results are used, and every result that arrives is recorded.

        Raises:
            whatever a task raised (the other tasks are cancelled);
            BuildError: a task killed its worker process more often than the scheduler allows (out of memory?).
        """
        return self.start(fn, jobs, state, stage=stage, cost=cost, min_task_cost=min_task_cost).results()

    def start(self, fn: Callable[[Any, Any], Any], jobs: Sequence[Any], state: Any = None, *, stage: str = "tiles",
              cost: Sequence[float] | None = None, min_task_cost: float = 0.0, first: Collection[int] = (),
              priority: int = 0) -> Wave:
        """`map` started now: the jobs' tasks are on the cluster when this returns, their results asked for later
        from the `Wave` (one job's as soon as it is done, or all in job order), so this process goes on meanwhile
        and a `start_graph` can take one job's result before the others are done (`Wave.ref`). Without a cluster
        (synchronous), or with one task to run, the jobs run here before this returns.

        Args:
            first: jobs that run in tasks of their own (batched among themselves) ahead of the others: the ones
                a graph started later waits for (an oblique production's tile roots).
            priority: this wave's tasks run after those of a wave or graph of a higher `priority` that are ready
                (Dask priorities); `first` jobs one above it.
        """
        jobs = list(jobs)
        self.counts[stage] = self.counts.get(stage, 0) + len(jobs)
        keys = [task_key(stage, job) for job in jobs] if self.manifest is not None else []
        results, todo, finished = self._resume(stage, keys, len(jobs))
        wave = Wave(stage, keys, results, todo, finished)
        if len(todo) > 1:
            self._connect()
        # a wave of one task runs here even on a cluster: sending its inputs to a worker and its result back is all
        # a worker would add, and the other workers would wait on it anyway
        if self._client is None or len(todo) == 1:
            for i in todo:
                wave.finished(i, fn(jobs[i], state))
        elif todo:
            self._map_distributed(fn, jobs, todo, state, stage, cost, wave, min_task_cost, set(first), priority)
        return wave

    def submit(self, fn: Callable[[Any, Any], Any], job: Any, state: Any = None, *, stage: str = "tiles",
               priority: int = 0) -> Callable[[], Any]:
        """`fn(job, state)` started now as one Dask task whose result is asked for later, so that this process
        goes on meanwhile (with a wave of one task, which runs here: `map`). Without a cluster (synchronous, or
        not started yet) it runs in this process when its result is asked for. Not recorded in a `manifest`.
        `priority` as in `start` (below 0: after every ready task of the waves and graphs of priority 0).

        Returns:
            A function that waits for the result and returns it (raising what the task raised).

        Raises:
            (from the returned function) BuildError: the task killed its worker process too often.
        """
        self.counts[stage] = self.counts.get(stage, 0) + 1
        if self._client is None:
            return functools.partial(fn, job, state)
        from distributed.scheduler import KilledWorker

        future = self._client.submit(fn, job, state, pure=False, key=f"{stage}-{uuid.uuid4().hex}",
                                     priority=priority * PRIORITY_BAND)

        def result() -> Any:
            try:
                return future.result()
            except KilledWorker as exc:
                raise BuildError(f"stage {stage}: a task killed its worker process more often than the scheduler "
                                 f"allows: {exc}") from exc
            finally:
                future.release()

        return result

    def graph(self, fn: Callable[[Any, list[Any], Any], Any], jobs: Sequence[Any], deps: Sequence[Sequence[int | Ref]],
              state: Any = None, *, stage: str = "tiles", cost: Sequence[float] | None = None) -> list[Any]:
        """`fn(job, inputs, state)` for every job, where `inputs` are the results of the jobs `deps[i]` names (in
        that order): a dependency graph of Dask tasks in which a job starts as soon as the jobs it needs are done,
        not when a whole wave is (the merged levels of an oblique production: a node waits for its own children).
        Of the jobs ready at a time, the one heading the costliest chain of jobs that wait on it starts first.
        Results in the order of `jobs` (`start_graph(...).results()`).

        The results stay on the workers until a job that needs them runs there; every job runs on the cluster.
        Without a cluster (synchronous, or a graph of one job before the cluster started) the jobs run here in
        order. `cost` is each job's own cost (any unit). With a `manifest`, a job's key is its stage, its job and
        its dependencies' keys (`task_key`), so a resumed build runs only the jobs it had not finished, fed with
        the recorded results of the others.

        Args:
            deps: for each job, the indices of the jobs whose results it takes, each smaller than the job's own
                (jobs in an order where every job comes after the ones it needs), or `Ref`s to jobs of a wave
                started before (`Wave.ref`: the job starts when that one is done, without waiting for its wave).

        Raises:
            BuildError: a dependency that does not come before its job; a task killed its worker too often.
            whatever a task raised (the other tasks are cancelled).
        """
        return self.start_graph(fn, jobs, deps, state, stage=stage, cost=cost).results()

    def start_graph(self, fn: Callable[[Any, list[Any], Any], Any], jobs: Sequence[Any],
                    deps: Sequence[Sequence[int | Ref]], state: Any = None, *, stage: str = "tiles",
                    cost: Sequence[float] | None = None, priority: int = 0) -> Wave:
        """`graph` started now: its tasks are on the cluster when this returns, the results asked for later from
        the `Wave`. `priority` as in `start`. Without a cluster the jobs run here before this returns."""
        jobs = list(jobs)
        deps = [list(d) for d in deps]
        if len(deps) != len(jobs) or any(not isinstance(j, Ref) and not 0 <= j < i
                                         for i, d in enumerate(deps) for j in d):
            raise BuildError(f"stage {stage}: every job's dependencies must be jobs listed before it")
        self.counts[stage] = self.counts.get(stage, 0) + len(jobs)
        keys: list[str] = []
        if self.manifest is not None:
            for i, job in enumerate(jobs):
                keys.append(task_key(stage, (job, [j.wave.keys[j.index] if isinstance(j, Ref) else keys[j]
                                                   for j in deps[i]])))
        results, todo, finished = self._resume(stage, keys, len(jobs))
        wave = Wave(stage, keys, results, todo, finished)
        if len(todo) > 1:
            self._connect()
        if self._client is None:
            for i in todo:
                wave.finished(i, fn(jobs[i], [j.wave.result(j.index) if isinstance(j, Ref) else results[j]
                                              for j in deps[i]], state))
        elif todo:
            self._graph_distributed(fn, jobs, deps, todo, wave, state, stage, cost, priority)
        return wave

    def _graph_distributed(self, fn: Callable[[Any, list[Any], Any], Any], jobs: list[Any],
                           deps: list[list[int | Ref]], todo: list[int], wave: Wave, state: Any, stage: str,
                           cost: Sequence[float] | None, priority: int) -> None:
        client = self._client
        [shared] = client.scatter([state], broadcast=True, hash=False)
        self.batched[stage] = self.batched.get(stage, 0) + len(todo)
        # a ready job goes first when the chain of jobs waiting on it is the costliest (its own cost included)
        weight = [max(float(cost[i]), 0.0) if cost is not None else 1.0 for i in range(len(jobs))]
        chain = list(weight)
        for i in reversed(range(len(jobs))):
            for j in deps[i]:
                if not isinstance(j, Ref):
                    chain[j] = max(chain[j], weight[j] + chain[i])
        rank = {i: r for r, i in enumerate(sorted(todo, key=lambda i: (-chain[i], i)))}
        futures: dict[int, Any] = {}
        for i in todo:  # dependencies first: their futures exist when a job that needs them is submitted
            inputs: list[Any] = []
            picks: list[int | None] = []
            for j in deps[i]:
                if isinstance(j, Ref):
                    value, pick = j.wave.handle(j.index)
                else:
                    value, pick = (futures[j], None) if j in futures else (wave.values[j], None)
                inputs.append(value)
                picks.append(pick)
            futures[i] = client.submit(_run_node, fn, jobs[i], inputs, picks, shared, pure=False,
                                       priority=priority * PRIORITY_BAND + len(todo) - rank[i],
                                       key=f"{stage}-{uuid.uuid4().hex}-{i}")
        wave.running(client, {fut: [i] for i, fut in futures.items()}, shared, single=True)

    def worker_count(self) -> int:
        """The worker threads tasks run on: the cluster's (connected), the local cluster's to be started, or 1
        (synchronous)."""
        if self._client is not None:
            try:
                return max(1, sum(self._client.nthreads().values()))
            except Exception:  # noqa: BLE001 - a closing scheduler
                return 1
        if self.scheduler == SYNCHRONOUS:
            return 1
        return self.workers or os.cpu_count() or 1

    def _map_distributed(self, fn: Callable[[Any, Any], Any], jobs: list[Any], todo: list[int], state: Any,
                         stage: str, cost: Sequence[float] | None, wave: Wave, min_task_cost: float = 0.0,
                         first: Collection[int] = (), priority: int = 0) -> None:
        client = self._client
        [shared] = client.scatter([state], broadcast=True, hash=False)
        groups: list[list[int]] = []
        ranked: list[tuple[int, list[int]]] = []
        for band, part in ((priority + 1, [i for i in todo if i in first]), (priority, [i for i in todo
                                                                                       if i not in first])):
            if not part:
                continue
            weights = [float(cost[i]) for i in part] if cost is not None else [1.0] * len(part)
            these = [[part[k] for k in g] for g in batches(weights, self.worker_count(), self.tasks_per_worker,
                                                            min_task_cost if cost is not None else 0.0)]
            # the costliest batches first, so the wave does not end waiting on one of them
            if cost is not None:
                these = sorted(these, key=lambda g: -sum(float(cost[i]) for i in g))
            groups += these
            ranked += [(band * PRIORITY_BAND + len(these) - rank, g) for rank, g in enumerate(these)]
        self.batched[stage] = self.batched.get(stage, 0) + len(groups)
        futures = {}
        for prio, group in ranked:
            futures[client.submit(_run_batch, fn, [jobs[i] for i in group], shared, pure=False, priority=prio,
                                  key=f"{stage}-{uuid.uuid4().hex}-{group[0]}")] = group
        wave.running(client, futures, shared, single=False)


def batches(cost: Sequence[float], workers: int, per_worker: int = TASKS_PER_WORKER,
            min_cost: float = 0.0) -> list[list[int]]:
    """Consecutive jobs grouped into about `workers` x `per_worker` Dask tasks of equal summed cost.

    A task costs the scheduler about a millisecond whatever it does, and one scheduler dispatches a few thousand a
    second: tiles of tens of milliseconds on a hundred workers would wait for it. Several tiles per task keep it
    ahead, and `per_worker` tasks for each worker still let the queue balance the wave (its tail is about half a
    task). A wave of at most that many jobs keeps one job per task. Job `i` goes to batch
    floor(cost before it / (total / batches)), so a batch holds neighbours in job order (a tile's neighbours, a
    `Tile_*` folder's files); a job costlier than a batch's share shares its batch with at most its neighbours.

    Args:
        cost: (n,) the jobs' costs (any unit; non-negative).
        workers: worker threads of the cluster.
        per_worker: tasks per worker wanted.
        min_cost: the least cost a task should carry: a small wave (in total cost) runs as fewer tasks per worker,
            down to one, so each task's work outweighs what Dask spends on it (the oblique conversion of a small
            production: docs/benchmarks.md).

    Returns:
        The batches as lists of job indices, in job order; every job once.
    """
    n = len(cost)
    per = max(1, int(per_worker))
    if min_cost > 0:
        total = float(np.nansum(np.maximum(np.asarray(cost, np.float64), 0.0)))
        per = max(1, min(per, int(total // (min_cost * max(1, int(workers))))))
    want = max(1, int(workers)) * per
    if n <= want:
        return [[i] for i in range(n)]
    c = np.maximum(np.asarray(cost, np.float64), 0.0)
    if not np.isfinite(c).all() or c.sum() <= 0:
        c = np.ones(n)
    c = c + c.sum() / n * 1e-3  # a job of cost 0 still moves the position on
    before = np.concatenate([[0.0], np.cumsum(c)[:-1]])
    gid = np.minimum(np.floor(before / c.sum() * want + 1e-9).astype(np.int64), want - 1)  # 1e-9: equal costs
    cuts = np.flatnonzero(np.diff(gid)) + 1
    return [g.tolist() for g in np.split(np.arange(n), cuts)]


def _run_batch(fn: Callable[[Any, Any], Any], jobs: list[Any], state: Any) -> list[Any]:
    """One Dask task: `fn(job, state)` for each job of a batch, in order."""
    return [fn(job, state) for job in jobs]


def _run_node(fn: Callable[[Any, list[Any], Any], Any], job: Any, inputs: list[Any], picks: list[int | None],
              state: Any) -> Any:
    """One Dask task of `Runner.graph`: `fn(job, inputs, state)` (Dask has put the results of the job's dependencies
    in place of their futures; a dependency on a job of a wave's batch takes that job's result, `picks`)."""
    return fn(job, [v if k is None else v[k] for v, k in zip(inputs, picks, strict=True)], state)


@contextlib.contextmanager
def runner_scope(runner: Runner | None, workers: int | None = None,
                 progress: Progress | None = None) -> Iterator[Runner]:
    """The given runner as it is, or a new one (a local cluster of `workers` processes, started when needed)."""
    if runner is not None:
        yield runner
        return
    with Runner(workers=workers, progress=progress) as own:
        yield own


def nest_tiles(nodes: list[tuple[QuadNode, str]], tiles: dict[str, Tile]) -> Tile:
    """Attach each tile to its parent (paths are quadtree paths) and grow bounding volumes upward; the root."""
    for node, path in reversed(nodes):  # children before parents
        tile = tiles[path]
        kids = [tiles[f"{path}{k}"] for k in range(len(node.children))]
        if kids:
            tile.children = kids
            tile.bounding_volume = BoundingVolume(
                region=union_regions([tile.bounding_volume.region] + [k.bounding_volume.region for k in kids])
            )
    return tiles[nodes[0][1]]
