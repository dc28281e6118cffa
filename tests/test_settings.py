"""The app's settings: read under APP_, the plain names of the last release still read with a warning."""

import logging

import pytest

from core import settings


def test_app_names_win_plain_names_still_work_with_a_deprecation_line(monkeypatch, caplog):
    monkeypatch.delenv("APP_PASSES", raising=False)
    monkeypatch.setenv("PASSES", "3")
    settings._warned.discard("PASSES")
    with caplog.at_level(logging.WARNING, logger="app"):
        assert settings.number("PASSES", 0) == 3
    assert "PASSES is deprecated: set APP_PASSES instead" in caplog.text
    monkeypatch.setenv("APP_PASSES", "1")
    assert settings.number("PASSES", 0) == 1
    monkeypatch.delenv("APP_PASSES")
    monkeypatch.delenv("PASSES")
    assert settings.number("PASSES", 2) == 2


def test_a_setting_the_app_cannot_honour_stops_it_with_the_variable_named(monkeypatch):
    for text in ("many", "nan", "inf", "-1"):
        monkeypatch.setenv("APP_QUEUE_SIZE", text)
        with pytest.raises(SystemExit, match=f"APP_QUEUE_SIZE='{text}'"):
            settings.number("QUEUE_SIZE", 64, minimum=1)
