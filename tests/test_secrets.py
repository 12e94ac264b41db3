"""Secrets are blanked in URLs, log records and CLI errors (urbanvis._secrets)."""

from __future__ import annotations

import logging

from urbanvis import _secrets


def test_redact_url_blanks_secret_parameters_only():
    url = (
        "https://maps.googleapis.com/maps/api/streetview?location=1.5,2&key=AIzaXYZ123"
        "&signature=abc-_=&access_token=MLY|9&keyword=park"
    )
    out = _secrets.redact_url(url)
    assert "AIzaXYZ123" not in out and "abc-_" not in out and "MLY|9" not in out
    assert "key=***" in out and "signature=***" in out and "access_token=***" in out
    assert "location=1.5,2" in out and "keyword=park" in out  # not a secret parameter


def test_redact_blanks_registered_and_environment_secrets(monkeypatch):
    monkeypatch.setenv("MAPILLARY_TOKEN", "MLY|env-token-77")
    _secrets.register("registered-secret-42")
    text = "token MLY|env-token-77 and registered-secret-42; Authorization: OAuth abc.def"
    out = _secrets.redact(text)
    assert "env-token-77" not in out and "registered-secret-42" not in out
    assert "abc.def" not in out and out.count("***") == 3


def test_log_filter_redacts_formatted_records(monkeypatch, caplog):
    monkeypatch.setenv("GOOGLE_MAPS_API_KEY", "AIzaLogKey-0001")
    _secrets.install_log_filter()
    _secrets.install_log_filter()  # idempotent: one filter only
    logger = logging.getLogger("urbanvis")
    assert sum(isinstance(f, _secrets.RedactingFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="urbanvis"):
        logging.getLogger("urbanvis").info("fetching %s", "http://x/y?key=AIzaLogKey-0001")
        logging.getLogger("urbanvis").info("the key is %s", "AIzaLogKey-0001")
    assert "AIzaLogKey-0001" not in caplog.text
    assert caplog.text.count("***") == 2


def test_credentials_in_a_url_are_blanked():
    out = _secrets.redact("failed for http://proxyuser:Pr0xyPass@127.0.0.1:8080/maps?key=K123")
    assert "Pr0xyPass" not in out and "proxyuser" not in out and "K123" not in out
    assert out == "failed for http://***@127.0.0.1:8080/maps?key=***"
