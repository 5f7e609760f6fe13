"""A bounded load: a few seconds of concurrent clients mixing ordinary and hostile requests.

The server must answer every request (no client timeout), never with a 500, and still be healthy afterwards; a
request that runs out of its time budget may answer 503 (that is the budget working). The latency percentiles are
printed for the record, not asserted (performance lives in bench/).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter

import httpx

from tests.hostile.support import HostileServer, assert_clean_error, assert_no_secret, budget_answer

SECONDS = 6.0
CLIENTS = 6


def _requests(key: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    like = "%" + "_%" * 40 + "x"
    return [
        ("/collections/shelters/items", {"limit": "50"}, {}),
        ("/collections/shelters/items", {"bbox": "113.30,40.09,113.305,40.095"}, {}),
        ("/collections/shelters/items", {"filter": f"名称 LIKE '{like}'"}, {}),
        ("/collections/shelters/items", {"filter": "(" * 300 + "capacity > 1" + ")" * 300}, {}),
        ("/tiles/shelters/14/13348/6193.mvt", {}, {}),
        ("/tiles/shelters/40/0/0.mvt", {}, {"If-None-Match": "*"}),
        ("/collections/hazards/items", {"api_key": key}, {}),
        ("/collections/hazards/items", {}, {"X-API-Key": "cim_00000000_" + "x" * 40}),
        ("/search", {"q": "%_%_%_%_%_%_%_%_%_%"}, {"X-API-Key": key}),
        ("/maps/ortho/16/53393/24776.png", {}, {}),
        ("/3dtiles/box/tileset.json", {}, {"Range": "bytes=0-10,20-30"}),
        ("/catalog", {}, {"Authorization": f"Bearer {key}"}),
    ]


def test_bounded_load_of_ordinary_and_hostile_requests(hostile_server: HostileServer) -> None:
    key = hostile_server.keys["confidential"]
    plan = _requests(key)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS

    def client(n: int) -> None:
        with httpx.Client(base_url=hostile_server.base, timeout=30) as c:
            i = n
            while time.monotonic() < stop:
                path, params, headers = plan[i % len(plan)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = c.get(path, params=params, headers=headers)
                    if not budget_answer(r):
                        assert_clean_error(r)
                except (httpx.HTTPError, AssertionError) as exc:
                    with lock:
                        failures.append(f"{path}: {exc}")
                    continue
                with lock:
                    statuses[r.status_code] += 1
                    latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    assert statuses and 500 not in statuses
    with httpx.Client(base_url=hostile_server.base, timeout=30) as c:
        assert c.get("/health").status_code == 200
    assert_no_secret(hostile_server.log.text(), hostile_server.secrets)
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 20 else latencies
    print(f"\nload: {len(latencies)} requests in {SECONDS:g} s by {CLIENTS} clients, statuses {dict(statuses)}, "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {q[-1] * 1000:.1f} ms")
