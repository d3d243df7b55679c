"""doctor's output gets pasted into bug reports: credentials in a base URL never show."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tutor.doctor import masked_url


@pytest.mark.parametrize("url, secret", [
    ("http://user:hunter2@127.0.0.1:8080/v1", "hunter2"),
    ("https://sk-abc123@example.com/v1", "sk-abc123"),
    ("https://example.com/v1?api_key=sk-abc123", "sk-abc123"),
])
def test_credentials_in_a_base_url_are_masked(url, secret):
    shown = masked_url(url)
    assert secret not in shown
    assert urlsplit(url).netloc.rpartition("@")[2] in shown  # the host and port stay


def test_a_plain_url_is_unchanged():
    assert masked_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
