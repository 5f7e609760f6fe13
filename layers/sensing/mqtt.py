"""Observations from an MQTT broker (the SensorThings MQTT extension's topics), stored by the batch writer.

    >>> ingest = MqttIngest(sensing, "127.0.0.1", 1883).start()      # doctest: +SKIP
    >>> ingest.counters.to_dict()                                      # doctest: +SKIP
    {'received': 120, 'stored': 119, 'rejected': 1, 'reasons': {'no Datastream 99': 1}}

Topics: `v1.1/Datastreams(n)/Observations` (the payload is an Observation entity) and `v1.1/Observations` (the
payload names its Datastream). Subscriptions are QoS 1 with a persistent session, and a message is acknowledged to
the broker only after the batch holding it is committed (paho's manual acknowledgement): a crash between arrival
and commit makes the broker deliver it again (at-least-once), never loses it.

A message that cannot be stored (not JSON, an unknown Datastream, a text result for a numeric Datastream, a
missing result ...) is acknowledged (so the broker does not send it again forever), counted by reason and logged
with the reason (at most `log_per_second` lines per second), and nothing of it is stored. The server keeps running.

MQTT has no API keys: who may publish is the broker's business (mosquitto's `acl_file` / `password_file`); what
arrives on these topics is stored like a write of a key that sees every Datastream. The broker must let one
subscriber have enough QoS 1 messages in flight for batching (mosquitto: `max_inflight_messages 1000` or more, and a
`max_queued_messages` above the bursts expected; beyond it mosquitto drops messages).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from layers.sensing.errors import SensingError, SensingInputError
from layers.sensing.observations import IngestCounters, parse_mqtt
from layers.sensing.values import LOCAL

if TYPE_CHECKING:
    from layers.sensing.store import SensingStore

log = logging.getLogger("cim.sensing.mqtt")

TOPICS = ("v1.1/+/Observations", "v1.1/Observations")


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (or `HOST`, port 1883).

    Raises:
        SensingInputError: not HOST[:PORT] with a port in 1..65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, "1883"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SensingInputError(f"MQTT broker {address!r} is not HOST:PORT (e.g. 127.0.0.1:1883)")
    return host.strip("[]"), int(port)


class MqttIngest:
    """A subscription to a broker that stores what is published on the observation topics.

    Args:
        sensing: an open, writable `SensingStore`.
        host, port: the broker.
        client_id: the MQTT client id (a persistent session: keep it stable across restarts).
        username, password: broker credentials, when it asks for them.
        topics: topic filters to subscribe to.
        log_per_second: rejected messages logged per second at most (all are counted).
    """

    def __init__(self, sensing: SensingStore, host: str, port: int = 1883, *, client_id: str = "cim-serve",
                 username: str | None = None, password: str | None = None, topics: tuple[str, ...] = TOPICS,
                 log_per_second: float = 10.0) -> None:
        self.sensing = sensing
        self.host, self.port = host, port
        self.client_id = client_id
        self.username, self.password = username, password
        self.topics = topics
        self.counters = IngestCounters()
        self.connected = threading.Event()
        self.log_per_second = log_per_second
        self._log_tokens = log_per_second
        self._log_at = time.monotonic()
        self._lock = threading.Lock()
        self._client: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> MqttIngest:
        """Connect, subscribe and start the network thread.

        Raises:
            SensingError: the broker cannot be reached within `timeout` seconds.
        """
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                             manual_ack=True)
        client.max_inflight_messages_set(1000)
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise SensingError(f"cannot reach the MQTT broker {self.host}:{self.port}: {exc}; start it or fix "
                               f"--mqtt HOST:PORT") from exc
        client.loop_start()
        self._client = client
        if not self.connected.wait(timeout):
            self.stop()
            raise SensingError(f"the MQTT broker {self.host}:{self.port} did not accept the connection within "
                               f"{timeout:g} s")
        return self

    def stop(self) -> None:
        """Disconnect (messages not yet acknowledged are delivered again on the next start)."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self.connected.clear()

    def __enter__(self) -> MqttIngest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ callbacks (paho's network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        client.subscribe([(t, 1) for t in self.topics])
        log.info("MQTT: subscribed to %s on %s:%d", ", ".join(self.topics), self.host, self.port)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        self.connected.clear()
        if self._client is not None:
            log.warning("MQTT: disconnected from %s:%d (%s); reconnecting", self.host, self.port, reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.counters.received += 1
        try:
            row = parse_mqtt(msg.topic, msg.payload)
            self.sensing._validate_rows([row], LOCAL)
        except (SensingError, ValueError) as exc:
            self._reject(msg, str(exc))
            client.ack(msg.mid, msg.qos)
            return

        def done(exc: BaseException | None, mid: int = msg.mid, qos: int = msg.qos) -> None:
            with self._lock:
                if exc is None:
                    self.counters.stored += 1
                else:
                    self.counters.reject(f"store failed: {exc}")
            if exc is None or isinstance(exc, SensingError):
                client.ack(mid, qos)  # a store failure of a valid message is left unacknowledged: sent again

        self.sensing.submit([row], on_done=done)

    def _reject(self, msg: Any, reason: str) -> None:
        with self._lock:
            self.counters.reject(reason)
            now = time.monotonic()
            self._log_tokens = min(self.log_per_second, self._log_tokens + (now - self._log_at) * self.log_per_second)
            self._log_at = now
            if self._log_tokens < 1:
                return
            self._log_tokens -= 1
        log.warning("MQTT: rejected a message on %s: %s", msg.topic[:120], reason[:300])


__all__ = ["TOPICS", "MqttIngest", "parse_address"]
