"""Processor settings: defaults, YAML file, environment (which wins), refusals."""

from __future__ import annotations

import pytest

from otel_llmcost import semconv as sc
from otel_llmcost.processor.settings import Settings, SettingsError, endpoint


def test_defaults_bind_to_loopback_and_keep_state():
    settings = Settings.load({})
    for value in (settings.grpc_endpoint, settings.http_endpoint, settings.metrics_endpoint):
        assert value.startswith("127.0.0.1:")
    assert settings.state_path and settings.token is None and settings.forward_endpoint is None


def test_the_environment_wins_over_the_file(tmp_path):
    config = tmp_path / "processor.yaml"
    config.write_text("trace_wait_s: 2\ntop_k: 7\nforward_endpoint: http://next:4318\n"
                      "grpc_endpoint: 'off'\n")
    settings = Settings.load({sc.ENV_PROCESSOR_CONFIG: str(config),
                              sc.ENV_PROCESSOR_PREFIX + "TOP_K": "9",
                              sc.ENV_PROCESSOR_PREFIX + "STATE_PATH": "off"})
    assert settings.engine.trace_wait_s == 2.0 and settings.engine.top_k == 9
    assert settings.forward_endpoint == "http://next:4318"
    assert settings.grpc_endpoint is None and settings.state_path is None


@pytest.mark.parametrize("environ,message", [
    ({sc.ENV_PROCESSOR_PREFIX + "TOP_K": "many"}, "not a number"),
    ({sc.ENV_PROCESSOR_PREFIX + "TRACE_WAIT_S": "nan"}, "must not be negative"),
    ({sc.ENV_PROCESSOR_PREFIX + "CHECKPOINT_S": "-1"}, "must not be negative"),
])
def test_bad_values_stop_start_up_with_the_setting_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.load(environ)


def test_unknown_names_in_the_file_are_refused(tmp_path):
    config = tmp_path / "processor.yaml"
    config.write_text("trace_wiat_s: 2\n")
    with pytest.raises(SettingsError, match="trace_wiat_s"):
        Settings.load({sc.ENV_PROCESSOR_CONFIG: str(config)})


def test_endpoints():
    assert endpoint("0.0.0.0:4317") == ("0.0.0.0", 4317)
    assert endpoint("[::1]:4318") == ("::1", 4318)
    with pytest.raises(SettingsError):
        endpoint("localhost")
