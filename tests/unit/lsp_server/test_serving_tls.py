"""TLS and mutual TLS between the real language server and the real serving layer (scripted
engine), with a throwaway certificate authority."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.channel import ClientSecurity, client_security, open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from serving.config import SecurityConfig
from tests.conftest import ROOT, in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete_at_end, initialize, open_document
from tests.support.tls import CertificateAuthority, Issued

URI = (ROOT / "tests" / "data" / "sample.py").as_uri()
TEXT = "def add(a, b):\n    return "


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca = CertificateAuthority(folder / "ca")
        self.server = self.ca.issue("serving", server=True)
        self.client = self.ca.issue("alice-laptop", server=False)
        # A client certificate from a CA serving does not trust.
        self.rogue_ca = CertificateAuthority(folder / "rogue", "Rogue CA")
        self.rogue = self.rogue_ca.issue("eve", server=False)

    def serving(self, mutual: bool) -> SecurityConfig:
        return SecurityConfig(
            tls_cert=self.server.cert,
            tls_key=self.server.key,
            tls_client_ca=self.ca.cert if mutual else None,
        )

    def client_settings(self, issued: Issued | None) -> dict[str, object]:
        options: dict[str, object] = {"servingTls": True, "servingCaFile": str(self.ca.cert)}
        if issued is not None:
            options |= {"servingClientCert": str(issued.cert), "servingClientKey": str(issued.key)}
        return options

    def health_client(self) -> ClientSecurity:
        # The launcher's health check presents the good client certificate (mutual TLS).
        return client_security(
            "127.0.0.1:1",
            tls=True,
            ca_file=str(self.ca.cert),
            client_cert=str(self.client.cert),
            client_key=str(self.client.key),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _complete(client: LanguageClient, address: str, options: dict[str, object]):  # type: ignore[no-untyped-def]
    await initialize(client, servingAddress=address, **options)
    open_document(client, URI, TEXT)
    return await complete_at_end(client, URI, TEXT)


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
async def test_completion_through_the_language_server_over_tls(
    client: LanguageClient, pki: Pki, mutual: bool
) -> None:
    engine = ScriptedEngine(chunks=["a + b"])
    async with in_process_serving(
        engine, security=pki.serving(mutual), client_security=pki.health_client()
    ) as address:
        result = await _complete(client, address, pki.client_settings(pki.client))
    assert [item.insert_text for item in result.items] == ["a + b"]
    assert len(engine.requests) == 1


async def test_mutual_tls_refuses_a_client_without_a_trusted_certificate(
    client: LanguageClient, pki: Pki
) -> None:
    engine = ScriptedEngine(chunks=["a + b"])
    async with in_process_serving(
        engine, security=pki.serving(mutual=True), client_security=pki.health_client()
    ) as address:
        result = await _complete(client, address, pki.client_settings(None))
        assert result is None or not result.items
        for issued in (None, pki.rogue):
            security = client_security(
                address,
                tls=True,
                ca_file=str(pki.ca.cert),
                client_cert=str(issued.cert) if issued else "",
                client_key=str(issued.key) if issued else "",
            )
            async with open_channel(address, security) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await quill_pb2_grpc.QuillStub(channel).ReportEvents(
                        pb.ReportEventsRequest(), timeout=5
                    )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not engine.requests
    for _ in range(50):
        if any("unavailable" in m.message for m in client.messages):
            break
        await asyncio.sleep(0.1)
    assert any("unavailable" in m.message for m in client.messages)


async def test_tls_serving_refuses_plain_text_and_unknown_authorities(pki: Pki) -> None:
    engine = ScriptedEngine(chunks=["a + b"])
    async with in_process_serving(
        engine, security=pki.serving(mutual=False), client_security=pki.health_client()
    ) as address:
        rogue_ca = client_security(address, tls=True, ca_file=str(pki.rogue_ca.cert))
        for security in (ClientSecurity(), rogue_ca):
            async with open_channel(address, security) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await quill_pb2_grpc.QuillStub(channel).ReportEvents(
                        pb.ReportEventsRequest(), timeout=5
                    )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        good = client_security(address, tls=True, ca_file=str(pki.ca.cert))
        async with open_channel(address, good) as channel:
            await quill_pb2_grpc.QuillStub(channel).ReportEvents(pb.ReportEventsRequest())
    assert not engine.requests


async def test_the_health_port_answers_probes_in_plain_text_and_nothing_else(pki: Pki) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from quill_cli.launcher import free_port

    health_address = f"127.0.0.1:{free_port()}"
    serving = in_process_serving(
        ScriptedEngine(),
        security=pki.serving(mutual=True),
        client_security=pki.health_client(),
        health_address=health_address,
    )
    # What a Kubernetes gRPC probe does: plain text, no token, no certificate.
    async with serving, grpc.aio.insecure_channel(health_address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await quill_pb2_grpc.QuillStub(channel).ReportEvents(
                pb.ReportEventsRequest(), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
