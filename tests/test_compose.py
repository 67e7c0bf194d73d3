"""The container stack of ``collector/compose.yaml``: it cannot be started here, so its
files are checked against the code: they parse, and ports, job names, paths, settings and
metric names agree with what the processor, the demo and the dashboards use."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from otel_llmcost import semconv as sc
from otel_llmcost.demo import workload
from otel_llmcost.processor.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "collector"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COLLECTOR / "compose.yaml")


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1].strip("/"))


def test_the_stack_has_every_service(compose):
    assert set(compose["services"]) == {"standin", "workload", "collector", "processor",
                                        "tempo", "prometheus", "grafana"}
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            dockerfile = (COLLECTOR / build["context"] / build["dockerfile"]).resolve()
            assert "'.[demo]'" in dockerfile.read_text()


def test_mounted_files_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COLLECTOR / source).exists(), (name, source)


def test_the_processor_settings_load_and_agree_with_the_collector_and_prometheus(
        compose, monkeypatch):
    env = compose["services"]["processor"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.load()  # an unknown or bad setting would raise
    otelcol = load(COLLECTOR / "stack" / "otelcol.yaml")
    assert otelcol["exporters"]["otlp/llmcost"]["endpoint"] == f"processor:{port(settings.grpc_endpoint)}"
    prometheus = load(COLLECTOR / "stack" / "prometheus.yml")
    jobs = {job["job_name"]: job["static_configs"][0]["targets"]
            for job in prometheus["scrape_configs"]}
    assert jobs[sc.PROCESSOR_COMMAND] == [f"processor:{port(settings.metrics_endpoint)}"]
    assert jobs["collector"] == [f"collector:{port(otelcol['exporters']['prometheus']['endpoint'])}"]
    tempo = load(COLLECTOR / "stack" / "tempo.yaml")
    forward = urlsplit(settings.forward_endpoint)
    assert forward.hostname == "tempo" and forward.port == port(
        tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"]["endpoint"])


def test_the_collector_pipelines_use_defined_components_and_the_app_reaches_it(compose):
    otelcol = load(COLLECTOR / "stack" / "otelcol.yaml")
    for pipeline in otelcol["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(otelcol.get(kind, {}) or {}), kind
    env = compose["services"]["workload"]["environment"]
    grpc = otelcol["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://collector:{port(grpc)}"
    assert env["OTEL_SERVICE_NAME"]  # the collector's prometheus exporter makes it the job


def test_the_workload_command_is_the_demo_apps(compose):
    command = compose["services"]["workload"]["command"]
    assert command[:4] == ["opentelemetry-instrument", "python", "-m", "otel_llmcost.demo.workload"]
    args = workload.parser().parse_args(command[4:])
    assert urlsplit(args.provider).hostname == "standin"
    standin = compose["services"]["standin"]["command"]
    assert standin[standin.index("--port") + 1] == str(urlsplit(args.provider).port)


def test_prometheus_loads_the_alerts_and_scrapes_as_grafana_assumes():
    prometheus = load(COLLECTOR / "stack" / "prometheus.yml")
    assert prometheus["rule_files"] == ["alerts.yaml"]
    datasource = load(ROOT / "grafana" / "provisioning" / "datasources" / "otel-llmcost.yaml")
    assert prometheus["global"]["scrape_interval"] == \
        datasource["datasources"][0]["jsonData"]["timeInterval"]


def test_grafana_gets_the_dashboards_where_the_provisioning_looks(compose):
    volumes = compose["services"]["grafana"]["volumes"]
    provider = load(ROOT / "grafana" / "provisioning" / "dashboards" / "otel-llmcost.yaml")
    path = provider["providers"][0]["options"]["path"]
    assert f"../grafana/dashboards:{path}:ro" in volumes
    tempo = load(COLLECTOR / "stack" / "tempo-datasource.yaml")["datasources"][0]
    datasource = load(ROOT / "grafana" / "provisioning" / "datasources" / "otel-llmcost.yaml")
    links = datasource["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"]
    assert links[0]["datasourceUid"] == tempo["uid"]
