"""A private Kafka broker for fault-injection tests: started, stopped and killed at will.

Tests that take a broker away must never touch the shared one on 127.0.0.1:9092 (other
tests run against it at the same time), so `LocalBroker` drives `scripts/kafka-local`
with its own state folder and ports. The Kafka jars are shared from the repository's
cache, so a start costs a JVM boot (~5-10 s on a 2-core box), not a download.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.support.ports import free_port

__all__ = ["BrokerCommandError", "LocalBroker"]

_KAFKA_LOCAL = Path(__file__).resolve().parents[2] / "scripts" / "kafka-local"
# `start` waits for a metadata answer; after a SIGKILL the controller first has to expire
# the dead incarnation (broker.session.timeout.ms, 4 s in kafka-local's config).
_START_TIMEOUT_S = 90
_STOP_TIMEOUT_S = 30
# What a script call may take beyond the broker's own timeouts (JVM start, the probe).
_CALL_MARGIN_S = 30


class BrokerCommandError(RuntimeError):
    """`scripts/kafka-local` failed; the message carries its output."""


class LocalBroker:
    """One single-node KRaft broker with its own state folder and ports.

    The ports are fixed for the broker's lifetime: KRaft storage is formatted for its
    controller address, and clients keep the bootstrap address across restarts.

    `num_partitions` is what a topic the broker auto-creates gets (`num.partitions`).

    With `ssl_cert` (a PEM chain, leaf first) and `ssl_key` (an unencrypted PKCS#8 PEM
    key) the broker also serves an SSL listener on `ssl_port` (`ssl_bootstrap`), next to
    the PLAINTEXT one.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        auto_create_topics: bool = True,
        num_partitions: int = 1,
        ssl_cert: Path | None = None,
        ssl_key: Path | None = None,
        ssl_port: int | None = None,
    ) -> None:
        if (ssl_cert is None) != (ssl_key is None):
            raise ValueError("an SSL listener needs both ssl_cert and ssl_key")
        self.state_dir = state_dir
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        if self.controller_port == self.port:
            self.controller_port = free_port()
        self.auto_create_topics = auto_create_topics
        self.num_partitions = num_partitions
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        self.ssl_port: int | None = None
        if ssl_cert is not None:
            self.ssl_port = ssl_port if ssl_port is not None else free_port()
            while self.ssl_port in (self.port, self.controller_port):
                self.ssl_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ssl_bootstrap(self) -> str:
        """The SSL listener's address; only for a broker made with `ssl_cert`."""
        if self.ssl_port is None:
            raise ValueError("this broker has no SSL listener")
        return f"127.0.0.1:{self.ssl_port}"

    def start(self) -> None:
        """Start and wait until it answers a metadata request (reuses a running one)."""
        self._run("start", timeout_s=_START_TIMEOUT_S)

    def stop(self) -> None:
        """Clean shutdown (SIGTERM, SIGKILL if it will not go)."""
        self._run("stop", timeout_s=_STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL: an unclean death, as a crash or an OOM kill leaves it."""
        self._run("kill", timeout_s=10)

    def pause(self) -> None:
        """SIGSTOP: the broker holds its connections and answers nothing (a GC pause, a
        frozen VM) until `resume`; no JVM restart, so it is quick."""
        os.kill(self._pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)

    def _pid(self) -> int:
        return int((self.state_dir / "broker.pid").read_text().strip())

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._run("status", timeout_s=15, check=False) == 0

    def destroy(self) -> None:
        """Stop it (killing it if a clean stop fails) and delete its state folder."""
        try:
            self.stop()
        except (BrokerCommandError, subprocess.TimeoutExpired):
            self.kill()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def _run(self, command: str, *, timeout_s: float, check: bool = True) -> int:
        env = {
            **os.environ,
            "KAFKA_LOCAL_DIR": str(self.state_dir),
            "KAFKA_LOCAL_PORT": str(self.port),
            "KAFKA_LOCAL_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_LOCAL_AUTO_CREATE_TOPICS": "true" if self.auto_create_topics else "false",
            "KAFKA_LOCAL_NUM_PARTITIONS": str(self.num_partitions),
            "KAFKA_LOCAL_START_TIMEOUT_S": str(_START_TIMEOUT_S),
            "KAFKA_LOCAL_STOP_TIMEOUT_S": str(_STOP_TIMEOUT_S),
        }
        for name in ("KAFKA_LOCAL_SSL_PORT", "KAFKA_LOCAL_SSL_CERT", "KAFKA_LOCAL_SSL_KEY"):
            env.pop(name, None)  # never a developer's, only this broker's own
        if self.ssl_port is not None:
            env["KAFKA_LOCAL_SSL_PORT"] = str(self.ssl_port)
            env["KAFKA_LOCAL_SSL_CERT"] = str(self.ssl_cert)
            env["KAFKA_LOCAL_SSL_KEY"] = str(self.ssl_key)
        completed = subprocess.run(
            [str(_KAFKA_LOCAL), command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout_s + _CALL_MARGIN_S,
            check=False,
        )
        if check and completed.returncode != 0:
            output = completed.stdout.decode(errors="replace")
            raise BrokerCommandError(
                f"kafka-local {command} ({self.bootstrap}, {self.state_dir}) exited "
                f"{completed.returncode}:\n{output}"
            )
        return completed.returncode
