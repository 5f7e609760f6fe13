"""Observations as they arrive (one JSON entity, a `dataArray` batch, an MQTT message, a row of a history file)
turned into checked rows for the batch writer.

Every parser checks the whole input before anything is queued: a bad observation is refused with the reason, and
no part of a request or message is stored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from layers.sensing.entities import OM_CATEGORY, OM_COUNT, OM_MEASUREMENT, OM_TRUTH
from layers.sensing.errors import SensingInputError
from layers.sensing.values import dumps, encode_result, now_utc, parse_instant, parse_interval

MAX_BATCH = 100_000  # observations of one request or message

# the layout of `sensing.observations`, in which observations travel to the batch writer (ids null: given at commit)
OBS_SCHEMA = pa.schema([
    ("id", pa.int64()), ("datastream_id", pa.int64()), ("phenomenon_time", pa.timestamp("us")),
    ("phenomenon_time_end", pa.timestamp("us")), ("result_time", pa.timestamp("us")),
    ("result_number", pa.float64()), ("result_json", pa.string()), ("result_quality", pa.string()),
    ("valid_time_start", pa.timestamp("us")), ("valid_time_end", pa.timestamp("us")),
    ("parameters", pa.string()), ("feature_id", pa.int64())])



class ObsRow(NamedTuple):
    """One observation ready to store (times naive UTC; `feature_id` None: the Thing's location)."""

    datastream_id: int
    phenomenon_time: datetime
    phenomenon_time_end: datetime | None
    result_time: datetime | None
    result_number: float | None
    result_json: str | None
    result_quality: str | None
    valid_time_start: datetime | None
    valid_time_end: datetime | None
    parameters: str | None
    feature_id: int | None


def rows_table(rows: Sequence[ObsRow], ids: Sequence[int] | None = None) -> pa.Table:
    """Observations as a table in the `observations` layout (null ids are given at commit)."""
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(11)]
    return pa.Table.from_arrays(
        [pa.array(ids if ids is not None else [None] * len(rows), pa.int64()), pa.array(cols[0], pa.int64()),
         pa.array(cols[1], pa.timestamp("us")), pa.array(cols[2], pa.timestamp("us")),
         pa.array(cols[3], pa.timestamp("us")), pa.array(cols[4], pa.float64()), pa.array(cols[5], pa.string()),
         pa.array(cols[6], pa.string()), pa.array(cols[7], pa.timestamp("us")), pa.array(cols[8], pa.timestamp("us")),
         pa.array(cols[9], pa.string()), pa.array(cols[10], pa.int64())], schema=OBS_SCHEMA)


_FIELDS = ("phenomenonTime", "resultTime", "result", "resultQuality", "validTime", "parameters", "Datastream",
           "FeatureOfInterest")
_COMPONENTS = ("phenomenonTime", "resultTime", "result", "resultQuality", "validTime", "parameters",
               "FeatureOfInterest/id")
_TOPIC = re.compile(r"^v1\.1/Datastreams\((\d{1,18})\)/Observations$")


def entity_id(value: Any, what: str) -> int:
    """The id of a reference `{"@iot.id": n}` (or a bare id).

    Raises:
        SensingInputError: not a reference to an integer id.
    """
    ref = value.get("@iot.id", value.get("id")) if isinstance(value, dict) else value
    if isinstance(ref, str) and ref.isdigit():
        ref = int(ref)
    if isinstance(ref, bool) or not isinstance(ref, int) or ref < 0:
        raise SensingInputError(f"{what} must reference an entity by id, e.g. {{\"@iot.id\": 1}}")
    return ref


def _optional_json(doc: dict[str, Any], key: str, what: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if key == "parameters" and not isinstance(value, dict):
        raise SensingInputError(f"{what}.parameters must be a JSON object")
    return dumps(value)


def parse_observation(doc: Any, what: str = "observation", *, datastream_id: int | None = None,
                      now: datetime | None = None) -> ObsRow:
    """An Observation entity (POST /Observations, an MQTT message) as a row.

    Args:
        doc: the JSON entity.
        what: how to name it in errors.
        datastream_id: the Datastream from the URL or topic (then `Datastream` in the body must agree or be absent).
        now: the phenomenon time of an observation without one (STA: the server's time of arrival).

    Raises:
        SensingInputError: not an object, an unknown or malformed member, no Datastream, no or a null result,
            an inline new FeatureOfInterest (create it first, or POST the Observation by HTTP).
    """
    if not isinstance(doc, dict):
        raise SensingInputError(f"{what} must be a JSON object with at least a result, e.g. "
                                f'{{"phenomenonTime": "2024-07-20T08:00:00Z", "result": 3.2}}')
    unknown = [k for k in doc if k not in _FIELDS]
    if unknown:
        raise SensingInputError(f"{what} has unknown member(s) {', '.join(map(repr, unknown[:5]))}; an Observation "
                                f"has {', '.join(_FIELDS)}")
    if "Datastream" in doc:
        ds = entity_id(doc["Datastream"], f"{what}.Datastream")
        if datastream_id is not None and ds != datastream_id:
            raise SensingInputError(f"{what}.Datastream {ds} differs from Datastream {datastream_id} of the path")
        datastream_id = ds
    if datastream_id is None:
        raise SensingInputError(f"{what} names no Datastream; add \"Datastream\": {{\"@iot.id\": n}} or post to "
                                f"Datastreams(n)/Observations")
    if "result" not in doc:
        raise SensingInputError(f"{what} has no result")
    number, text = encode_result(doc["result"], f"{what}.result")
    if "phenomenonTime" in doc and doc["phenomenonTime"] is not None:
        start, end = parse_interval(doc["phenomenonTime"], f"{what}.phenomenonTime")
    else:
        start, end = (now or now_utc()), None
    result_time = parse_instant(doc["resultTime"], f"{what}.resultTime") if doc.get("resultTime") is not None \
        else None
    valid = parse_interval(doc["validTime"], f"{what}.validTime") if doc.get("validTime") is not None \
        else (None, None)
    feature = None
    if doc.get("FeatureOfInterest") is not None:
        foi = doc["FeatureOfInterest"]
        if isinstance(foi, dict) and "@iot.id" not in foi and "id" not in foi:
            raise SensingInputError(f"{what}.FeatureOfInterest: an inline new FeatureOfInterest is created by "
                                    f"POST /FeaturesOfInterest (or POST /Observations with it); reference it "
                                    f"here by id")
        feature = entity_id(foi, f"{what}.FeatureOfInterest")
    return ObsRow(datastream_id, start, end, result_time, number, text,
                  _optional_json(doc, "resultQuality", what), valid[0], valid[1],
                  _optional_json(doc, "parameters", what), feature)


def parse_data_array(body: Any, *, now: datetime | None = None, start: int = 0) -> list[list[ObsRow]]:
    """The body of `POST /CreateObservations` (the Data Array extension, STA 1.1 section 14.4) as rows, one list
    per Datastream entry.

    Raises:
        SensingInputError: a malformed entry or row; the message names the entry and row index.
    """
    if not isinstance(body, list) or not body:
        raise SensingInputError("CreateObservations expects a non-empty JSON array of "
                                '{"Datastream": {"@iot.id": n}, "components": [...], "dataArray": [[...], ...]}')
    out: list[list[ObsRow]] = []
    total = 0
    for i, entry in enumerate(body, start):
        where = f"CreateObservations[{i}]"
        if not isinstance(entry, dict):
            raise SensingInputError(f"{where} is not an object")
        unknown = [k for k in entry if k not in ("Datastream", "components", "dataArray", "dataArray@iot.count")]
        if unknown:
            raise SensingInputError(f"{where} has unknown member(s) {', '.join(map(repr, unknown[:5]))}")
        if "Datastream" not in entry:
            raise SensingInputError(f"{where} names no Datastream (MultiDatastreams are not supported)")
        ds = entity_id(entry["Datastream"], f"{where}.Datastream")
        comps = entry.get("components")
        if not isinstance(comps, list) or not comps or not all(isinstance(c, str) for c in comps):
            raise SensingInputError(f"{where}.components must be a list of names among {', '.join(_COMPONENTS)}")
        bad = [c for c in comps if c not in _COMPONENTS]
        if bad or len(set(comps)) != len(comps):
            raise SensingInputError(f"{where}.components: {bad or comps} -- give each of "
                                    f"{', '.join(_COMPONENTS)} at most once")
        if "result" not in comps:
            raise SensingInputError(f"{where}.components has no result")
        rows = entry.get("dataArray")
        if not isinstance(rows, list):
            raise SensingInputError(f"{where}.dataArray must be a list of rows")
        declared = entry.get("dataArray@iot.count")
        if declared is not None and declared != len(rows):
            raise SensingInputError(f"{where}: dataArray@iot.count is {declared} but dataArray has {len(rows)} rows")
        total += len(rows)
        if total > MAX_BATCH:
            raise SensingInputError(f"CreateObservations has more than {MAX_BATCH} observations; send batches")
        parsed: list[ObsRow] = []
        n = len(comps)
        keys = ["FeatureOfInterest" if c == "FeatureOfInterest/id" else c for c in comps]
        for j, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != n:
                raise SensingInputError(f"{where}.dataArray[{j}] must be a list of {n} values ({', '.join(comps)})")
            doc = dict(zip(keys, row, strict=True))
            if "FeatureOfInterest" in doc and doc["FeatureOfInterest"] is not None:
                doc["FeatureOfInterest"] = {"@iot.id": doc["FeatureOfInterest"]}
            parsed.append(parse_observation(doc, f"{where}.dataArray[{j}]", datastream_id=ds, now=now))
        out.append(parsed)
    return out


_FAST = ("phenomenonTime", "result", "resultTime", "FeatureOfInterest/id")
_ENTRY_KEYS = {"Datastream", "components", "dataArray", "dataArray@iot.count"}


def _fast_columns(entry: Any, i: int) -> tuple[int, dict[str, tuple[Any, ...]]] | None:
    """(Datastream, columns) of a dataArray entry in the common shape: instants as text, numbers (not booleans),
    optional result times and feature ids; None for anything else (the checked row path then names the problem)."""
    if not isinstance(entry, dict) or not set(entry) <= _ENTRY_KEYS:
        return None
    comps, rows = entry.get("components"), entry.get("dataArray")
    if not isinstance(comps, list) or not isinstance(rows, list) or not rows or \
            entry.get("dataArray@iot.count", len(rows)) != len(rows):
        return None
    if not all(isinstance(c, str) for c in comps) or len(set(comps)) != len(comps) or not set(comps) <= set(_FAST) \
            or "phenomenonTime" not in comps or "result" not in comps:
        return None
    try:
        ds = entity_id(entry.get("Datastream"), f"CreateObservations[{i}].Datastream")
    except SensingInputError:
        return None
    n = len(comps)
    if any(type(r) is not list or len(r) != n for r in rows):
        return None
    cols = dict(zip(comps, zip(*rows, strict=True), strict=True))
    if not all(type(v) is float or type(v) is int for v in cols["result"]):  # bool is neither
        return None
    if not all(type(x) is str and "/" not in x for x in cols["phenomenonTime"]):
        return None
    if not all(x is None or type(x) is str for x in cols.get("resultTime", ())):
        return None
    if not all(x is None or (type(x) is int and x >= 0) for x in cols.get("FeatureOfInterest/id", ())):
        return None
    return ds, cols


def _fast_table(parts: list[tuple[int, dict[str, tuple[Any, ...]]]]) -> pa.Table | None:
    """One table of fast entries, built column-wise (no Python object per row); None when a value does not
    convert (a time without a zone, a number out of range): the caller takes the row path."""
    sizes = [len(cols["result"]) for _, cols in parts]
    m = sum(sizes)
    ds = np.repeat(np.array([d for d, _ in parts], dtype=np.int64), sizes)
    values = [v for _, cols in parts for v in cols["result"]]
    times = [x for _, cols in parts for x in cols["phenomenonTime"]]
    rtimes = [x for _, cols in parts for x in cols.get("resultTime", (None,) * len(cols["result"]))]
    feats = [x for _, cols in parts for x in cols.get("FeatureOfInterest/id", (None,) * len(cols["result"]))]
    utc = pa.timestamp("us", "UTC")
    try:
        phen = pa.array(times, pa.string()).cast(utc).cast(pa.timestamp("us"))
        result_time = pa.array(rtimes, pa.string()).cast(utc).cast(pa.timestamp("us"))
        number = pa.array(values, pa.float64())
        feature = pa.array(feats, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    if not np.isfinite(number.to_numpy()).all():
        return None
    text = pa.array([str(v) if type(v) is int else None for v in values], pa.string()) \
        if any(type(v) is int for v in values) else pa.nulls(m, pa.string())
    nt, ns = pa.nulls(m, pa.timestamp("us")), pa.nulls(m, pa.string())
    return pa.Table.from_arrays([pa.nulls(m, pa.int64()), pa.array(ds), phen, nt, result_time, number, text, ns, nt,
                                 nt, ns, feature], schema=OBS_SCHEMA)


def data_array_table(body: Any, *, now: datetime | None = None) -> pa.Table:
    """The body of `POST /CreateObservations` as one table in the `observations` layout, rows in request order.
    Entries in the common shape (instants with zones, numbers) are converted column-wise, all together; the others
    row by row through `parse_data_array`'s checks.

    Raises:
        SensingInputError: as `parse_data_array`.
    """
    if not isinstance(body, list) or not body:
        return rows_table([r for g in parse_data_array(body, now=now) for r in g])
    segments: list[tuple[int, dict[str, tuple[Any, ...]]] | pa.Table] = []
    total = 0
    for i, entry in enumerate(body):
        fast = _fast_columns(entry, i)
        if fast is None:
            segment: Any = rows_table([r for g in parse_data_array([entry], now=now, start=i) for r in g])
            total += segment.num_rows
        else:
            segment = fast
            total += len(fast[1]["result"])
        segments.append(segment)
        if total > MAX_BATCH:
            raise SensingInputError(f"CreateObservations has more than {MAX_BATCH} observations; send batches")
    parts = [s for s in segments if not isinstance(s, pa.Table)]
    if parts:
        table = _fast_table(parts)  # type: ignore[arg-type]
        if table is None:  # some value did not convert: every entry through the checked path
            return rows_table([r for g in parse_data_array(body, now=now) for r in g])
        if len(parts) == len(segments):
            return table
        out, at = [], 0
        for s in segments:  # keep the request's order
            if isinstance(s, pa.Table):
                out.append(s)
            else:
                k = len(s[1]["result"])
                out.append(table.slice(at, k))
                at += k
        return pa.concat_tables(out).combine_chunks()
    return pa.concat_tables(segments).combine_chunks()  # type: ignore[arg-type]


def parse_mqtt(topic: str, payload: bytes, *, now: datetime | None = None) -> ObsRow:
    """An MQTT message on `v1.1/Datastreams(n)/Observations` (or `v1.1/Observations` with a Datastream in the
    body) as a row.

    Raises:
        SensingInputError: another topic, a payload that is not UTF-8 JSON, or a malformed observation.
    """
    ds: int | None = None
    m = _TOPIC.match(topic)
    if m is not None:
        ds = int(m.group(1))
    elif topic != "v1.1/Observations":
        raise SensingInputError(f"topic {topic[:80]!r} is not v1.1/Datastreams(n)/Observations")
    if len(payload) > 1_000_000:
        raise SensingInputError(f"payload of {len(payload)} bytes; an observation is at most 1 MB")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SensingInputError(f"payload is not JSON: {exc}") from None
    return parse_observation(doc, f"message on {topic}", datastream_id=ds, now=now)


def check_result(row: ObsRow, observation_type: str, what: str) -> None:
    """Check a result against its Datastream's observationType.

    Raises:
        SensingInputError: e.g. a text result for an OM_Measurement Datastream.
    """
    text, number = row.result_json, row.result_number
    if observation_type == OM_MEASUREMENT:
        ok = number is not None
        want = "a number"
    elif observation_type == OM_COUNT:
        ok = number is not None and text is not None and number == int(number)
        want = "an integer"
    elif observation_type == OM_TRUTH:
        ok = text in ("true", "false")
        want = "true or false"
    elif observation_type == OM_CATEGORY:
        ok = text is not None and (number is not None or text.startswith('"'))
        want = "a category (text or code)"
    else:
        return
    if not ok:
        shown = text if text is not None else repr(number)
        raise SensingInputError(f"{what}: result {shown[:40]} is not {want}, as Datastream {row.datastream_id}'s "
                                f"observationType {observation_type.rsplit('/', 1)[-1]} requires")


@dataclass
class IngestCounters:
    """What an ingest path received, stored and refused (by reason)."""

    received: int = 0
    stored: int = 0
    rejected: int = 0
    reasons: dict[str, int] | None = None

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if self.reasons is None:
            self.reasons = {}
        key = reason.split(":")[0][:80]
        self.reasons[key] = self.reasons.get(key, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "stored": self.stored, "rejected": self.rejected,
                "reasons": dict(self.reasons or {})}


__all__ = ["MAX_BATCH", "OBS_SCHEMA", "IngestCounters", "ObsRow", "check_result", "data_array_table", "entity_id",
           "parse_data_array", "parse_mqtt", "parse_observation", "rows_table"]
