"""Which token a client sends, and where it never sends one."""

from __future__ import annotations

from pathlib import Path

import pytest

from quill import local_auth
from quill.channel import (
    ChannelConfigError,
    ClientSecurity,
    channel_credentials,
    client_security,
    is_loopback,
    resolve_token,
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("QUILL_TOKEN", raising=False)
    return tmp_path


def test_loopback_addresses() -> None:
    for address in ("127.0.0.1:50051", "127.1.2.3:1", "localhost:50051", "[::1]:50051"):
        assert is_loopback(address), address
    for address in ("0.0.0.0:50051", "[::]:1", "10.0.0.1:50051", "quill.example.com:443"):
        assert not is_loopback(address), address


def test_token_order_setting_file_environment_local(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = local_auth.ensure_secret(local_auth.local_token_path())
    assert resolve_token("127.0.0.1:1") == local
    # The local token is for a serving on this machine only.
    assert resolve_token("quill.example.com:443") == ""
    monkeypatch.setenv("QUILL_TOKEN", "from-env")
    assert resolve_token("127.0.0.1:1") == "from-env"
    (cache / "file").write_text(" from-file \n", encoding="utf-8")
    assert resolve_token("127.0.0.1:1", token_file=str(cache / "file")) == "from-file"
    assert resolve_token("127.0.0.1:1", "given", str(cache / "file")) == "given"


def test_bad_client_settings_say_what_is_wrong(cache: Path) -> None:
    (cache / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(ChannelConfigError, match="token file .*empty is empty"):
        client_security("127.0.0.1:1", token_file=str(cache / "empty"))
    with pytest.raises(ChannelConfigError, match="cannot read the CA file /nope"):
        client_security("h:1", tls=True, ca_file="/nope")
    with pytest.raises(ChannelConfigError, match="certificate and its key go together"):
        client_security("h:1", tls=True, client_cert=str(cache / "empty"))
    with pytest.raises(ChannelConfigError, match="needs TLS"):
        client_security("h:1", ca_file=str(cache / "empty"))


def test_no_token_in_plain_text_across_a_network(caplog: pytest.LogCaptureFixture) -> None:
    security = ClientSecurity(token="secret")
    assert channel_credentials("10.0.0.1:50051", security) is None
    assert "not sending the token to 10.0.0.1:50051" in caplog.text
    assert channel_credentials("127.0.0.1:50051", security) is not None
    assert channel_credentials("10.0.0.1:50051", ClientSecurity(token="t", tls=True)) is not None
