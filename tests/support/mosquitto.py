"""A real MQTT broker for tests: Debian's `mosquitto`, started on a free loopback port with its own config.

    with mosquitto_broker(tmp_path) as broker:      # skips when /usr/sbin/mosquitto is not installed
        MqttIngest(sensing, broker.host, broker.port).start()
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.http import free_port
from tests.support.processes import stop_process

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def mosquitto_broker(workdir: Path) -> Iterator[Broker]:
    """Run mosquitto on 127.0.0.1 and a free port until the block ends (skips the test when it is missing).

    The config lets one subscriber hold 1000 QoS 1 messages in flight and queue 1,000,000, as docs/sensing.md
    asks of a broker feeding `cim serve --mqtt`."""
    if not Path(MOSQUITTO).is_file():
        pytest.skip("Debian's mosquitto is not installed (bin/setup installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        port = free_port()
        conf, log = workdir / "mosquitto.conf", workdir / "mosquitto.log"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        f"max_inflight_messages 1000\nmax_queued_messages 1000000\nlog_dest file {log}\n"
                        f"log_type error\nlog_type warning\n")
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        if proc.poll() is None:
            break
        if attempt == 4:
            raise RuntimeError(f"mosquitto did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
    try:
        yield Broker("127.0.0.1", port, log)
    finally:
        stop_process(proc, timeout=10)
