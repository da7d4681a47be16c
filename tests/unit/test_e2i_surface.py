"""The pieces of the E2I surface that need no server: OpikConfig, span objects, id arguments,
and the connector's constructor forms (the Opik mapping of tags/input/output/cost is tested in
test_opik_mapping.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from src.agents.ml_foundation.observability_connector.config import (
    CircuitBreakerSettings,
    ConfigError,
    ObservabilityConfig,
    OpikSettings,
    SamplingSettings,
)
from src.agents.ml_foundation.observability_connector.models import (
    ObservabilitySpan,
    SpanKind,
    SpanStatus,
)
from src.mlops.opik_config import OpikConfig, resolve_config
from src.mlops.opik_connector import OpikConnector
from src.mlops.span_factory import caller_id

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


class StepClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)
        return self.now


class ListProcessor:
    def __init__(self) -> None:
        self.spans: list[ObservabilitySpan] = []

    def submit(self, span: ObservabilitySpan) -> None:
        self.spans.append(span)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True


def _connector() -> tuple[OpikConnector, ListProcessor]:
    processor = ListProcessor()
    return OpikConnector(processor, clock=StepClock()), processor


# -- OpikConfig -------------------------------------------------------------------------------
def test_opik_config__from_env__e2i_variables_read() -> None:
    env = {
        "OPIK_API_KEY": "sk-secret-123",
        "OPIK_WORKSPACE": "e2i",
        "OPIK_PROJECT_NAME": "e2i-prod",
        "OPIK_ENDPOINT": "http://opik.internal:5173/api/",
        "OPIK_ENABLED": "false",
        "OPIK_SAMPLE_RATE": "0.25",
        "OPIK_ALWAYS_SAMPLE_ERRORS": "no",
    }
    config = OpikConfig.from_env(env)
    assert (config.workspace, config.project_name) == ("e2i", "e2i-prod")
    assert config.url == "http://opik.internal:5173/api/"
    assert (config.enabled, config.sample_rate, config.always_sample_errors) == (False, 0.25, False)
    assert isinstance(config.api_key, SecretStr)
    assert "sk-secret-123" not in repr(config) and "sk-secret-123" not in str(config)


def test_opik_config__from_env__sdk_url_wins_over_e2i_endpoint() -> None:
    env = {"OPIK_URL_OVERRIDE": "http://a/api/", "OPIK_ENDPOINT": "http://b/api/"}
    assert OpikConfig.from_env(env).url == "http://a/api/"


@pytest.mark.parametrize("variable", ["OPIK_URL_OVERRIDE", "OPIK_ENDPOINT"])
def test_opik_config__url_with_user_password__masked_in_repr_and_str(variable: str) -> None:
    """Issue 11 (7): a user:password inside the Opik URL showed wherever the config did."""
    config = OpikConfig.from_env({variable: "http://alice:url-pw-99@opik.internal:5173/api/"})
    assert config.url == "http://alice:url-pw-99@opik.internal:5173/api/"
    for text in (repr(config), str(config)):
        assert "url-pw-99" not in text and "http://alice:***@opik.internal:5173/api/" in text


def test_resolve_config__opik_url_with_password_in_base__kept_for_the_client() -> None:
    """A masked dump must never be what a connector is built from: the password would be
    replaced by `***` and Opik would refuse every batch."""
    url = "http://alice:url-pw-99@opik.internal:5173/api/"
    base = ObservabilityConfig(opik=OpikSettings(url_override=url, local_endpoint=url))
    view = OpikConfig(project_name="e2i-x", source=base)
    resolved = resolve_config(view, {"failure_threshold": 2})
    assert (resolved.opik.url_override, resolved.opik.local_endpoint) == (url, url)
    assert resolved.opik.project_name == "e2i-x" and resolved.circuit_breaker.failure_threshold == 2


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OPIK_ENABLED": "maybe"}, "OPIK_ENABLED"),
        ({"OPIK_SAMPLE_RATE": "ten"}, "OPIK_SAMPLE_RATE"),
        ({"OPIK_SAMPLE_RATE": "1.5"}, "sample_rate"),
    ],
)
def test_opik_config__from_env__bad_value__config_error_names_it(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        OpikConfig.from_env(env)


def test_opik_config__view_of_full_config__fields_and_sections() -> None:
    full = ObservabilityConfig(
        opik=OpikSettings(project_name="p", workspace="w", enabled=False),
        sampling=SamplingSettings(environment="production", production_rate=0.1),
    )
    view = OpikConfig.from_observability(full)
    assert (view.project_name, view.workspace, view.enabled) == ("p", "w", False)
    assert view.sample_rate == 0.1  # the rate in force in production
    assert view.batching is full.batching and view.capture is full.capture
    with pytest.raises(AttributeError):
        _ = view.no_such_section


def test_resolve_config__opik_config__overrides_opik_and_sampling_only() -> None:
    base = ObservabilityConfig(opik=OpikSettings(api_key=SecretStr("from-file")))
    given = OpikConfig(project_name="rag-eval", sample_rate=0.5, use_local=True, source=base)
    resolved = resolve_config(given)
    assert resolved.opik.project_name == "rag-eval"
    assert resolved.opik.use_local and resolved.opik.effective_url == "http://localhost:5173/api"
    local = resolve_config(OpikConfig(url="http://opik.lan:8080", use_local=True, source=base))
    assert local.opik.effective_url == "http://opik.lan:8080/api"
    assert OpikConfig.from_observability(local).url == "http://opik.lan:8080/api"
    assert resolved.opik.api_key.get_secret_value() == "from-file"  # None left the file's key
    assert (resolved.sampling.default_rate, resolved.sampling.production_rate) == (0.5, 0.5)
    assert resolved.storage == base.storage


def test_resolve_config__e2i_breaker_config_object__settings_replaced() -> None:
    @dataclass
    class CircuitBreakerConfig:  # E2I's shape, with fields we may not have
        failure_threshold: int = 2
        reset_timeout_seconds: float = 7.0
        half_open_max_calls: int = 3

    resolved = resolve_config(ObservabilityConfig(), CircuitBreakerConfig())
    assert (
        resolved.circuit_breaker.failure_threshold,
        resolved.circuit_breaker.reset_timeout_seconds,
    ) == (2, 7.0)
    mapping = resolve_config(ObservabilityConfig(), {"failure_threshold": 9})
    assert mapping.circuit_breaker.failure_threshold == 9
    same = CircuitBreakerSettings(failure_threshold=4)
    assert resolve_config(ObservabilityConfig(), same).circuit_breaker is same


def test_resolve_config__wrong_type__type_error() -> None:
    with pytest.raises(TypeError, match="OpikConfig"):
        resolve_config({"opik": {}})


# -- connector forms --------------------------------------------------------------------------
def test_opik_connector__injected_processor__not_the_default() -> None:
    connector, _ = _connector()
    assert connector.is_enabled and connector.circuit_state == "disabled"
    assert connector.circuit_breaker.is_closed  # a stand-alone breaker without Opik
    assert connector.config.project_name == "e2i-causal-analytics"


def test_opik_connector__unknown_keyword_without_processor__type_error() -> None:
    with pytest.raises(TypeError, match="config and circuit_breaker_config"):
        OpikConnector(project_name="x")  # type: ignore[call-arg]


def test_opik_connector__breaker_config__shapes_standalone_breaker() -> None:
    connector = OpikConnector(ListProcessor(), circuit_breaker_config={"failure_threshold": 1})
    connector.circuit_breaker.record_failure()
    assert connector.circuit_breaker.is_open


def test_opik_connector__copied__the_same_connector_not_the_default() -> None:
    import copy

    connector, _ = _connector()
    assert copy.copy(connector) is connector
    assert copy.deepcopy({"c": connector})["c"] is connector


async def test_log_model_prediction__uuid_object_or_blank_id__a_str_trace_id() -> None:
    connector, processor = _connector()
    given = uuid.uuid4()
    assert await connector.log_model_prediction("m", {}, {}, trace_id=given) == str(given)
    blank = await connector.log_model_prediction("m", {}, {}, trace_id="")
    assert uuid.UUID(blank).hex == processor.spans[-1].trace_id
    assert processor.spans[0].trace_id == given.hex


def test_opik_connector__closed__not_enabled() -> None:
    connector, _ = _connector()
    connector.close()
    assert connector.is_enabled is False and connector.get_status()["enabled"] is False


# -- span objects ---------------------------------------------------------------------------
def test_span_context__metadata_is_attributes_and_to_dict_after_block() -> None:
    connector, processor = _connector()
    with connector.trace_agent(
        "gap_analyzer", "analyze", metadata={"brand": "Kisqali"}, tags=["a", "b", "a"]
    ) as span:
        assert span.metadata is span.attributes
        span.metadata["rows"] = 3
        span.add_tags(["b", "c"])
        assert (span.status, span.end_time, span.duration_ms) == (SpanStatus.STARTED, None, None)
    data = span.to_dict()
    assert data["name"] == "gap_analyzer.analyze" and data["status"] == "completed"
    assert data["duration_ms"] == pytest.approx(10.0) and data["ended_at"] is not None
    assert data["tags"] == ["a", "b", "c"]
    assert processor.spans[0].attributes == {"brand": "Kisqali", "rows": 3, "tags": ["a", "b", "c"]}


async def test_llm_span_context__log_tokens_and_cost__validated_and_totalled() -> None:
    connector, processor = _connector()
    async with connector.trace_llm_call(model="gpt-4o", provider="openai") as llm:
        llm.log_tokens(input_tokens=10, output_tokens=5)
        assert llm.total_tokens == 15
        with pytest.raises(ValueError, match="input_tokens"):
            llm.log_tokens(input_tokens=-1)
        with pytest.raises(ValueError, match="cost_usd"):
            llm.set_cost(float("nan"))
        llm.set_cost(0)
    assert (llm.total_cost, llm.to_dict()["provider"]) == (0.0, "openai")
    assert processor.spans[0].span_kind is SpanKind.LLM


# -- id arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (str(uuid.UUID(int=5 << 64 | 7)), False),
        (uuid.UUID(int=5 << 64 | 7), False),
        ("ABCDEF0123456789ABCDEF0123456789", False),
        ("trace-123", True),
        (12345, True),
    ],
)
def test_caller_id__any_form__never_raises_original_kept_only_when_lost(
    value: object, kept: bool
) -> None:
    from src.agents.ml_foundation.observability_connector.ids import normalize_trace_id

    attrs: dict[str, object] = {}
    mapped = caller_id(value, normalize_trace_id, attrs, "trace_id.original")
    assert mapped is not None and len(mapped) == 32
    assert ("trace_id.original" in attrs) is kept


@pytest.mark.parametrize("value", [None, "", "   "])
def test_caller_id__blank__none(value: object) -> None:
    from src.agents.ml_foundation.observability_connector.ids import normalize_span_id

    assert caller_id(value, normalize_span_id, {}, "x") is None


@pytest.mark.parametrize("trace_id", [None, "", " "])
def test_log_feedback__no_trace__value_error(trace_id: object) -> None:
    connector, processor = _connector()
    with pytest.raises(ValueError, match="trace_id"):
        connector.log_feedback(trace_id, 0.5)  # type: ignore[arg-type]
    assert processor.spans == []
