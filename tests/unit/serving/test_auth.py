"""Identity: bearer tokens checked for every RPC but health (and reflection), a token file that
reloads, the local token created on first start, and the refusal to listen unprotected."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from quill import local_auth
from quill.channel import ClientSecurity, open_channel
from quill.tokens import hash_token, new_token
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from serving import auth
from serving.config import SecurityConfig
from serving.transport import ExposureError, check_exposure
from tests.conftest import in_process_serving

# One request of every RPC of the Quill service: all must be refused without a valid token.
UNARY_CALLS = {
    "SyncWorkspace": pb.SyncWorkspaceRequest(workspace_id="w", manifest_complete=True),
    "SearchApi": pb.SearchApiRequest(workspace_id="w", query="json"),
    "ReportEvents": pb.ReportEventsRequest(typed_chars={"python": 5}),
}


async def _call_every_rpc(channel: grpc.aio.Channel) -> dict[str, grpc.StatusCode]:
    """The status of one call of each Quill RPC on `channel`."""
    stub = quill_pb2_grpc.QuillStub(channel)
    codes: dict[str, grpc.StatusCode] = {}
    for name, request in UNARY_CALLS.items():
        try:
            await getattr(stub, name)(request, timeout=10)
            codes[name] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            codes[name] = error.code()
    complete = stub.Complete(pb.CompleteRequest(prefix="def f(a, b):\n    "), timeout=10)
    try:
        async for _ in complete:
            pass
        codes["Complete"] = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        codes["Complete"] = error.code()
    repair = stub.Repair(timeout=10)
    try:
        await repair.write(pb.RepairClientMessage(start=pb.RepairStart(text="x = 1")))
        async for _ in repair:
            pass
        codes["Repair"] = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        codes["Repair"] = error.code()
    return codes


def _token_file(path: Path, tenants: dict[str, str]) -> Path:
    """Write a token file for tenant -> token."""
    lines = ["# tenant  token hash"]
    lines += [f"{tenant} {hash_token(token)}" for tenant, token in tenants.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_token_file_parses_tenants_and_names_bad_lines() -> None:
    token = new_token()
    parsed = auth.parse_token_file(f"\n# comment\nalice {hash_token(token)}  # laptop\n", "f")
    assert parsed == {hash_token(token): "alice"}
    good_hash = hash_token("x")
    for text, message in (
        ("alice", "f:1: want 'TENANT sha256:HEX', got 1 fields"),
        (f"al ice {good_hash}", "got 3 fields"),
        (f"-alice {good_hash}", "f:1: tenant '-alice' must be"),
        ("alice sha256:abc", "f:1: the hash must be"),
        (f"alice md5:{'0' * 64}", "the hash must be"),
        (f"a {good_hash}\nb {good_hash}", "f:2: the same token hash is listed twice"),
    ):
        with pytest.raises(auth.TokenFileError, match=message.replace("(", r"\(")):
            auth.parse_token_file(text, "f")


def test_token_store_reloads_a_changed_file_and_keeps_tokens_on_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(auth, "_RELOAD_CHECK_S", 0.0)
    alice, bob = new_token(), new_token()
    path = _token_file(tmp_path / "tokens", {"alice": alice})
    store = auth.TokenStore(path)
    assert store.tenant_for(alice) == "alice"
    assert store.tenant_for(bob) is None
    _token_file(path, {"bob": bob})  # alice's token rotated out, bob's added
    assert store.tenant_for(bob) == "bob"
    assert store.tenant_for(alice) is None
    path.write_text("bob not-a-hash\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="serving.auth"):
        assert store.tenant_for(bob) == "bob"
    assert "previous tokens kept" in caplog.text and "the hash must be" in caplog.text


def test_an_empty_token_file_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# nobody yet\n", encoding="utf-8")
    with pytest.raises(auth.TokenFileError, match="no tokens"):
        auth.TokenStore(path)


def test_bearer_token_reads_the_authorization_entry() -> None:
    assert auth.bearer_token([("x-quill-workspace", "w"), ("authorization", "Bearer t1")]) == "t1"
    assert auth.bearer_token([("authorization", "Basic dXNlcg==")]) is None
    assert auth.bearer_token(None) is None


async def test_every_rpc_refuses_a_missing_or_wrong_token_alike(scripted_engine) -> None:  # type: ignore[no-untyped-def]
    async with in_process_serving(scripted_engine) as address:
        # The owner syncs a workspace, so "exists" and "does not exist" could differ.
        async with open_channel(address) as channel:
            stub = quill_pb2_grpc.QuillStub(channel)
            await stub.SyncWorkspace(
                pb.SyncWorkspaceRequest(
                    workspace_id="w",
                    files=[pb.WorkspaceFile(path="a.py", content="SECRET = 1\n")],
                )
            )
        details: set[str] = set()
        for security in (ClientSecurity(), ClientSecurity(token=new_token())):
            async with open_channel(address, security) as channel:
                codes = await _call_every_rpc(channel)
                assert set(codes) == set(pb.DESCRIPTOR.services_by_name["Quill"].methods_by_name), (
                    "every RPC of the service is tried"
                )
                assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes
                stub = quill_pb2_grpc.QuillStub(channel)
                for workspace in ("w", "does-not-exist"):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.SearchApi(
                            pb.SearchApiRequest(workspace_id=workspace, query="SECRET")
                        )
                    details.add(refused.value.details() or "")
        # One message for a missing token and one for a wrong one, whatever the workspace.
        assert len(details) == 2 and not any("workspace" in d for d in details), details
        # Health answers without a token: load balancers and probes call it.
        async with open_channel(address, ClientSecurity()) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            response = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def _reflected_services(address: str) -> list[str]:
    async with open_channel(address, ClientSecurity()) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(timeout=5)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await call.done_writing()
        response = await anext(aiter(call))
        return [s.name for s in response.list_services_response.service]


async def test_reflection_answers_without_a_token_and_can_be_switched_off(
    scripted_engine,  # type: ignore[no-untyped-def]
) -> None:
    async with in_process_serving(scripted_engine) as address:
        assert "quill.v1.Quill" in await _reflected_services(address)
    off = SecurityConfig(reflection=False)
    async with in_process_serving(scripted_engine, security=off) as address:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _reflected_services(address)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_token_file_tenants_get_in_and_a_new_token_works_without_restart(
    scripted_engine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "_RELOAD_CHECK_S", 0.0)
    alice, bob = new_token(), new_token()
    path = _token_file(tmp_path / "tokens", {"alice": alice})
    security = SecurityConfig(token_file=path)
    async with in_process_serving(scripted_engine, security=security) as address:

        async def report(token: str) -> grpc.StatusCode:
            async with open_channel(address, ClientSecurity(token=token)) as channel:
                try:
                    await quill_pb2_grpc.QuillStub(channel).ReportEvents(
                        pb.ReportEventsRequest(), timeout=5
                    )
                except grpc.aio.AioRpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

        assert await report(alice) == grpc.StatusCode.OK
        assert await report(bob) == grpc.StatusCode.UNAUTHENTICATED
        # The local token is not accepted once the operator gave a token file.
        local = local_auth.read_secret(local_auth.local_token_path())
        if local is not None:
            assert await report(local) == grpc.StatusCode.UNAUTHENTICATED
        _token_file(path, {"alice": alice, "bob": bob})
        assert await report(bob) == grpc.StatusCode.OK
        _token_file(path, {"bob": bob})  # alice's token revoked
        assert await report(alice) == grpc.StatusCode.UNAUTHENTICATED


async def test_first_start_creates_the_local_token_for_this_user_only(
    scripted_engine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("QUILL_TOKEN", raising=False)
    path = local_auth.local_token_path()
    assert not path.exists()
    async with in_process_serving(scripted_engine) as address:
        token = local_auth.read_secret(path)
        assert token is not None and token.startswith("quill_") and len(token) > 40
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        # A client on this machine finds it there without being told.
        async with open_channel(address) as channel:
            await quill_pb2_grpc.QuillStub(channel).ReportEvents(pb.ReportEventsRequest())
    async with in_process_serving(scripted_engine):
        assert local_auth.read_secret(path) == token, "the second start reuses it"


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "token"
    with ThreadPoolExecutor(8) as pool:
        secrets = list(pool.map(lambda _: local_auth.ensure_secret(path), range(8)))
    assert len(set(secrets)) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["token"], "no temporary files left"


def test_a_loosened_secret_is_made_private_again(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("quill_abc\n", encoding="utf-8")
    os.chmod(path, 0o644)
    assert local_auth.ensure_secret(path) == "quill_abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_non_loopback_needs_tls_and_operator_tokens_or_insecure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check_exposure("127.0.0.1:50051", SecurityConfig(), operator_tokens=False)
    check_exposure("localhost:50051", SecurityConfig(), operator_tokens=False)
    tls = SecurityConfig(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    with pytest.raises(ExposureError, match=r"without TLS \(--tls-cert/--tls-key\) and tokens"):
        check_exposure("0.0.0.0:50051", SecurityConfig(), operator_tokens=False)
    with pytest.raises(ExposureError, match=r"without TLS .*--insecure"):
        check_exposure("[::]:50051", SecurityConfig(), operator_tokens=True)
    with pytest.raises(ExposureError, match=r"without tokens \(--token-file or QUILL_TOKEN\)"):
        check_exposure("10.0.0.5:50051", tls, operator_tokens=False)
    check_exposure("0.0.0.0:50051", tls, operator_tokens=True)
    with caplog.at_level(logging.WARNING, logger="serving.transport"):
        check_exposure("0.0.0.0:50051", SecurityConfig(insecure=True), operator_tokens=False)
    assert "--insecure: listening on 0.0.0.0:50051 without TLS" in caplog.text


async def test_serving_refuses_to_start_on_an_unprotected_network_address(
    scripted_engine,  # type: ignore[no-untyped-def]
) -> None:
    from serving.config import EngineConfig, ServingConfig
    from serving.server import serve

    config = ServingConfig(engine=EngineConfig(model="scripted"), address="0.0.0.0:0")
    config.metrics_address = ""
    with pytest.raises(ExposureError, match="refusing to listen on 0.0.0.0:0"):
        await serve(config, lambda: scripted_engine, stop=asyncio.Event())
