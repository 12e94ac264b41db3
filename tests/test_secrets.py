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


def test_one_list_decides_which_names_are_secret():
    secret = ("key", "api_key", "apiKey", "access_token", "client_secret", "sig", "signature",
              "signing_secret", "key_file", "token_file", "X-Amz-Signature")  # fmt: skip
    for name in secret:
        assert _secrets.is_secret_name(name), name
    for name in ("keyword", "signed", "monkey_count", "spacing", "design", "tokens_per_s"):
        assert not _secrets.is_secret_name(name), name
    kept = _secrets.drop_secrets({"api_key": 1, "signed": True, "keyword": "park", "sig": 2})
    assert kept == {"signed": True, "keyword": "park"}
    assert _secrets.redact_url("https://x/y?api_key=AB12&sig=CD34&q=1") == (
        "https://x/y?api_key=***&sig=***&q=1"
    )


def test_providers_and_census_read_their_secrets_from_the_one_list():
    from urbanvis.providers import gsv, mapillary

    assert {gsv.KEY_ENV, gsv.SECRET_ENV, mapillary.TOKEN_ENV} <= set(_secrets.SECRET_ENV)
    assert _secrets.CENSUS_KEY_ENV in _secrets.SECRET_ENV


def test_a_registered_secret_is_blanked_when_url_quoted_too():
    _secrets.register("k3y/with+chars=9")
    out = _secrets.redact("echo k3y%2Fwith%2Bchars%3D9 and k3y/with+chars=9")
    assert "k3y" not in out and out.count("***") == 2
    assert _secrets.redact("short ab1", "ab1") == "short ***"  # given explicitly: any length
