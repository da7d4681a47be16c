"""The otlp: section and OpenTelemetry's exporter variables, as the SDKs read them."""

from __future__ import annotations

import pytest

from src.agents.ml_foundation.observability_connector.config import ConfigError, load_config


def test_otlp__no_endpoint__sink_off():
    assert load_config(env={}).otlp.active is False


def test_otlp__base_endpoint_variable__traces_path_appended_and_sink_on():
    otlp = load_config(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}).otlp
    assert (otlp.endpoint, otlp.active) == ("http://127.0.0.1:4318/v1/traces", True)


def test_otlp__traces_endpoint_variable__used_as_given_and_wins_over_base():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom/traces",
    }
    assert load_config(env=env).otlp.endpoint == "http://collector:4318/custom/traces"


def test_otlp__enabled_false_in_file__off_whatever_the_environment():
    config = load_config(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        overrides={"otlp": {"enabled": False}},
    )
    assert config.otlp.active is False


def test_otlp__headers_timeout_service_resource__parsed_like_the_sdks():
    otlp = load_config(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr%3Dt,x-team=obs",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_SERVICE_NAME": "e2i-api",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=prod,team=obs",
        }
    ).otlp
    assert otlp.header_values() == {"api-key": "s3cr=t", "x-team": "obs"}
    assert otlp.timeout_seconds == 2.5
    assert otlp.service_name == "e2i-api"
    assert otlp.resource_attributes == {"deployment.environment.name": "prod", "team": "obs"}


def test_otlp__headers_and_url_credentials__masked_in_repr_and_redacted():
    config = load_config(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:pw@otlp.example:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20topsecret",
        }
    )
    shown = repr(config) + str(config.redacted()) + repr(config.otlp)
    assert "topsecret" not in shown and ":pw@" not in shown


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "key=value"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "milliseconds"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-5"}, "milliseconds"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "http:// or https://"),
    ],
)
def test_otlp__bad_variable__config_error_names_it(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_otlp__semconv_opt_in__latest_only():
    env = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http,gen_ai_latest_experimental"}
    assert load_config(env=env).otlp.latest_semconv_only is True
    assert load_config(env={}).otlp.latest_semconv_only is False
