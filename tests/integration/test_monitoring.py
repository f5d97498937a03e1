"""What an operator looks at (issue 21), against a running service fed by the simulator.

One fleet instance (CHANNEL_SOURCE=kafka, an IRC token validated by the simulator's
OAuth endpoint, so the token and fleet series exist) reads alpha and beta, which talk,
and gamma, which never does. Against it:

* every metric name the alert rules and the Grafana dashboard use (their PromQL parsed
  by promql-parser) is in its `/metrics` — or, for the EventSub source's own series, in
  the `/metrics` of an EventSub instance;
* `twitch-ingestion top`, driven under tmux, shows the flow, the quiet channel, who reads
  what, and a dead endpoint as a line on screen; `q` quits cleanly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import twitch_env
from tests.integration.kafka_helpers import delete_topics
from tests.integration.service_process import ServiceProcess, clean_environment
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import load_settings
from twitch_ingestion.fleet.control_topic import require_control_topics, write_channels
from twitch_ingestion.metrics import EVENTSUB_COUNTERS, NAMESPACE
from twitch_ingestion.simulator import SimulatorConfig, SimulatorThread
from twitch_ingestion.simulator.eventsub_server import (
    EventSubSimulatorConfig,
    EventSubSimulatorThread,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
TALKING, SILENT = ["alpha", "beta"], "gamma"
INSTANCE_ID = "top-test"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def sample_names(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def channel_messages(exposition: str, channel: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if (
                sample.name == "twitch_ingestion_channel_messages_total"
                and sample.labels.get("channel") == channel
            ):
                return sample.value
    return 0.0


@dataclass
class RunningInstance:
    env: dict[str, str]
    metrics_url: str
    service: ServiceProcess
    eventsub: EventSubSimulatorThread
    workdir: Path


@pytest.fixture(scope="module")
def instance(
    kafka_brokers: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningInstance]:
    workdir = tmp_path_factory.mktemp("monitoring")
    suffix = uuid.uuid4().hex[:10]
    port = free_port()
    topics = {
        "KAFKA_TOPIC_CHAT_MESSAGES": f"test-chat-{suffix}",
        "KAFKA_TOPIC_CHAT_EVENTS": f"test-events-{suffix}",
        "KAFKA_TOPIC_DLQ": f"test-chat-{suffix}.dlq",
        "KAFKA_TOPIC_CHANNELS": f"test-channels-{suffix}",
        "KAFKA_TOPIC_INSTANCES": f"test-instances-{suffix}",
        "KAFKA_CHANNELS_GROUP": f"test-fleet-{suffix}",
    }
    kafka = {
        **topics,
        "KAFKA_BROKERS": kafka_brokers,
        "KAFKA_TOPIC_PARTITIONS": "1",
        "KAFKA_CHANNELS_PARTITIONS": "4",
    }
    with (
        SimulatorThread(SimulatorConfig(seed=7)) as simulator,
        EventSubSimulatorThread(
            EventSubSimulatorConfig(subscribe_deadline_s=10.0, reconnect_grace_s=10.0)
        ) as eventsub,
    ):
        settings = load_settings(require_channels=False, **{k.lower(): v for k, v in kafka.items()})
        control = configs.control_topics_config(settings)
        require_control_topics(control)
        write_channels(control, configs.producer_tuning(settings), [*TALKING, SILENT], enabled=True)
        token = eventsub.issue_token(scopes=("chat:read",)).access_token
        env = {
            **twitch_env(simulator, []),
            **kafka,
            "CHANNEL_SOURCE": "kafka",
            "INSTANCE_ID": INSTANCE_ID,
            "KAFKA_CHANNELS_SESSION_TIMEOUT_MS": "6000",
            "TWITCH_USERNAME": "sim_bot",
            "TWITCH_OAUTH_TOKEN": f"oauth:{token}",
            "TWITCH_AUTH_URL": eventsub.urls["TWITCH_AUTH_URL"],
            "TWITCH_JOIN_TIMEOUT_S": "3",
            "HEALTH_PORT": str(port),
            "HEALTH_HOST": "127.0.0.1",
            "BUFFER_DIR": str(workdir / "buffer"),
            "KAFKA_LINGER_MS": "5",
        }
        service = ServiceProcess(workdir, env)
        try:
            wait_until(
                lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
                f"the fleet instance to be ready:\n{service.logs()[-3000:]}",
            )
            simulator.start_generated(100.0, channels=TALKING, seed=3)
            url = f"http://127.0.0.1:{port}/metrics"
            wait_until(
                lambda: all(channel_messages(get(url)[1], c) > 0 for c in TALKING),
                "chat of both talking channels in /metrics",
            )
            yield RunningInstance(env, url, service, eventsub, workdir)
        finally:
            simulator.stop_streams()
            service.close()
            delete_topics(kafka_brokers, list(topics.values()))


# --- every metric the rules and the dashboard use exists -------------------------------


def _names_in(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return names


def _rule_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(
        (MONITORING / "grafana" / "dashboards" / "twitch-ingestion.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    # Grafana's own variables become what Grafana would put there.
    return [e.replace("$__rate_interval", "1m") for e in exprs]


def test_rules_and_dashboard_parse_and_name_metrics() -> None:
    """The parser reads every expression, and finds names in each (a sanity check of
    the check below: an expression it could not see into would name nothing)."""
    for expr in [*_rule_expressions(), *_dashboard_expressions()]:
        assert _names_in(expr), expr


def test_every_metric_the_rules_and_the_dashboard_use_is_exported(
    instance: RunningInstance,
) -> None:
    used = set().union(*map(_names_in, [*_rule_expressions(), *_dashboard_expressions()]))
    used.discard("up")  # Prometheus's own, per target
    exported = sample_names(get(instance.metrics_url)[1])
    eventsub_only = {
        f"{NAMESPACE}_{name}{'_total' if kind == 'counter' else ''}"
        for name, (_, kind) in EVENTSUB_COUNTERS.items()
    }
    missing = used - exported
    assert missing <= eventsub_only, f"not in an IRC instance's /metrics: {missing - eventsub_only}"
    if missing:
        exported_eventsub = _eventsub_instance_metrics(instance)
        assert missing - exported_eventsub == set(), "not in an EventSub instance's /metrics"


def _eventsub_instance_metrics(instance: RunningInstance) -> set[str]:
    """The sample names of an EventSub instance's /metrics (the same broker topics)."""
    sim = instance.eventsub
    port = free_port()
    token = sim.issue_token(scopes=("user:read:chat",))
    env = {
        **{k: v for k, v in instance.env.items() if k.startswith("KAFKA_TOPIC_CHAT")},
        "KAFKA_BROKERS": instance.env["KAFKA_BROKERS"],
        "KAFKA_TOPIC_DLQ": instance.env["KAFKA_TOPIC_DLQ"],
        "TWITCH_SOURCE": "eventsub",
        "TWITCH_CHANNEL": "delta",
        "TWITCH_CLIENT_ID": sim.config.client_id,
        "TWITCH_OAUTH_TOKEN": token.access_token,
        **sim.urls,
        "HEALTH_PORT": str(port),
        "HEALTH_HOST": "127.0.0.1",
        "BUFFER_DIR": str(instance.workdir / "buffer-eventsub"),
    }
    service = ServiceProcess(instance.workdir, env)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(
            lambda: "twitch_ingestion_eventsub_notifications_total" in get(url)[1],
            f"the EventSub instance's series:\n{service.logs()[-3000:]}",
        )
        return sample_names(get(url)[1])
    finally:
        service.close()


# --- `top` under tmux -------------------------------------------------------------------------


class Tmux:
    """One tmux server of our own (its own socket), one session, one pane."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"ti-top-{uuid.uuid4().hex[:8]}"
        self.env = env

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "top")

    def wait_for(self, check: Callable[[str], bool], what: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux_env(instance: RunningInstance) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux not found (`make test` installs it with apt-get when run as root)")
    env = clean_environment(
        {k: v for k, v in instance.env.items() if k.startswith(("KAFKA_", "HEALTH_"))}
    )
    env.pop("TMUX", None)
    tmux = Tmux(env)
    yield tmux
    tmux.close()


def _row(screen: str, channel: str) -> list[str]:
    for line in screen.splitlines():
        fields = line.split()
        if fields and fields[0] == channel:
            return fields
    return []


def test_top_shows_the_flow_the_quiet_channel_and_who_reads_what(
    instance: RunningInstance, tmux_env: Tmux
) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/metrics"
    command = (
        f"{sys.executable} -m twitch_ingestion top --fleet {instance.metrics_url} {dead_url}"
        " --interval-s 1 --quiet-s 5; echo top-exited=$?; sleep 60"
    )
    tmux_env.run(
        "new-session", "-d", "-s", "top", "-x", "150", "-y", "45", "-c", str(instance.workdir),
        command,
    )  # fmt: skip

    def flowing(screen: str) -> bool:
        alpha, gamma = _row(screen, "alpha"), _row(screen, SILENT)
        instance_line = _row(screen, _netloc(instance.metrics_url))
        return (
            len(alpha) >= 3
            and len(instance_line) >= 3
            and float(instance_line[2].replace(",", "")) > 0  # acknowledged out
            and alpha[1] == INSTANCE_ID  # from the fleet's reports
            and float(alpha[2].replace(",", "")) > 0
            and "QUIET" in gamma
            and "fleet instance" in screen
        )

    screen = tmux_env.wait_for(flowing, "alpha flowing, gamma quiet, the fleet panel")
    print(screen)  # the screen, for the record (pytest -s)
    assert "twitch-ingestion top" in screen
    beta = _row(screen, "beta")
    assert beta[1] == INSTANCE_ID
    assert float(beta[2].replace(",", "")) > 0
    # The instance line: messages in and acknowledged out, Kafka up, Twitch ready.
    [line] = [ln for ln in screen.splitlines() if ln.split()[:1] == [_netloc(instance.metrics_url)]]
    in_per_s, acked_per_s = (float(x.replace(",", "")) for x in line.split()[1:3])
    assert in_per_s > 0, line
    assert acked_per_s > 0, line
    assert " up " in line, line
    assert "ready" in line, line
    assert re.search(rf"{INSTANCE_ID}\s+yes\s+3\s+yes", screen), "the fleet panel"
    # The endpoint that is down: said on screen, tried again, no traceback.
    assert f"cannot read {dead_url}: connection refused; trying again every 1 s" in screen

    tmux_env.run("send-keys", "-t", "top", "q")
    after = tmux_env.wait_for(lambda s: "top-exited=" in s, "top to quit on q", 15)
    assert "top-exited=0" in after, after
    assert "Traceback" not in after


def _netloc(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]
