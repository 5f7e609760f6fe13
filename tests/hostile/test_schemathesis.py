"""Schemathesis over `/api`: requests generated from the server's own OpenAPI document, valid and invalid.

The operations come from the document the server serves at the time of the test, so every route registered by any
module is covered. The run is bounded: a fixed number of examples per generation mode, deterministic. Each answer
must be below 500 (or a budget 503), a JSON error document for a 4xx, without a traceback; the log keeps no secret.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.hostile.support import (HOSTILE, HostileServer, assert_clean_error, assert_no_secret, budget_answer,
                                  event_stream_paths)

EXAMPLES = 8  # per operation and generation mode


def _operations(server: HostileServer) -> list:
    doc = httpx.get(f"{server.base}/api", timeout=30).json()
    schema = schemathesis.openapi.from_dict(doc)
    # an event stream never ends, so a generated request to it would never complete: test_requests.py attacks it
    # with a client that reads only its start
    endless = event_stream_paths(doc)
    ops = [op for op in (r.ok() for r in schema.get_all_operations()) if op.path not in endless]
    assert len(ops) >= 20, "the OpenAPI document lists too few operations"
    return ops


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_generated_requests_over_every_operation(hostile_server: HostileServer, mode: GenerationMode) -> None:
    key = hostile_server.keys["confidential"]
    seen: set[str] = set()

    def run(case: schemathesis.Case, with_key: bool) -> None:
        headers = {"X-API-Key": key} if with_key else {}
        try:
            response = case.call(base_url=hostile_server.base, headers=headers, timeout=30)
        except (ValueError, UnicodeError):
            return  # a request the HTTP client itself refuses to send (e.g. a NUL in a header)
        seen.add(case.operation.label)
        media = response.headers.get("content-type") or [""]  # Schemathesis keeps each header's values in a list
        r = httpx.Response(response.status_code, content=response.content,
                           headers={"content-type": media if isinstance(media, str) else media[0]},
                           request=httpx.Request(case.method, f"{hostile_server.base}{case.formatted_path}"))
        if not budget_answer(r):
            assert_clean_error(r)

    ops = _operations(hostile_server)
    unsatisfiable = 0
    for op in ops:
        @given(case=op.as_strategy(generation_mode=mode), with_key=st.booleans())
        @settings(HOSTILE, max_examples=EXAMPLES)
        def one(case: schemathesis.Case, with_key: bool) -> None:
            run(case, with_key)

        try:
            one()
        except Unsatisfiable:  # an operation without parameters has no invalid form
            assert mode == GenerationMode.NEGATIVE
            unsatisfiable += 1
    assert len(seen) >= len(ops) - unsatisfiable - 2, f"only {len(seen)} of {len(ops)} operations were reached"
    assert_no_secret(hostile_server.log.text(), hostile_server.secrets)
