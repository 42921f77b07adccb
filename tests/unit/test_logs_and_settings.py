"""Logs are JSON off a terminal and carry kopf's object identity; settings come from the env."""

from __future__ import annotations

import io
import json
import logging

import pytest

from controller.logs import configure_logging, get_logger
from controller.settings import Settings


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    configure_logging("auto", "INFO", stream=out)
    return out


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_structlog_records_are_json_when_not_on_a_tty(stream: io.StringIO) -> None:
    get_logger("blockflow.test").info("hello", answer=42)
    (record,) = _records(stream)
    assert record["event"] == "hello" and record["answer"] == 42 and record["level"] == "info"
    assert record["logger"] == "blockflow.test" and "timestamp" in record


def test_kopf_object_logs_are_flattened(stream: io.StringIO) -> None:
    import kopf  # attaches kopf's Event-posting handler to kopf.objects, as in the controller

    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    extra = {
        "settings": settings,
        "k8s_skip": False,
        "k8s_ref": {"kind": "Block", "namespace": "ns1", "name": "assets", "uid": "u"},
    }
    logging.getLogger("kopf.objects").info("Handler succeeded.", extra=extra)  # quiet at INFO
    logging.getLogger("kopf.objects").warning("Handler failed.", extra=extra)
    (record,) = _records(stream)
    assert record["event"] == "Handler failed." and record["level"] == "warning"
    assert (record["kind"], record["namespace"], record["name"]) == ("Block", "ns1", "assets")
    assert "settings" not in record and "k8s_ref" not in record


def test_console_format_is_not_json() -> None:
    out = io.StringIO()
    configure_logging("console", "INFO", stream=out)
    get_logger("blockflow.test").info("hello")
    assert "hello" in out.getvalue() and not out.getvalue().lstrip().startswith("{")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOCKFLOW_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("BLOCKFLOW_LOG_LEVEL", "debug")
    config = Settings()
    assert config.namespaces == ["team-a", "team-b"]
    assert config.log_level == "DEBUG"


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOCKFLOW_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
