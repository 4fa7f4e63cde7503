"""The serving process: a grpc.aio server hosting the engine, health, reflection and /metrics.

Lifecycle: the gRPC port opens first and answers health with NOT_SERVING while the engine loads
(in a worker thread, so health keeps answering); then SERVING. SIGTERM or SIGINT -> NOT_SERVING,
in-flight RPCs get `shutdown_grace_s` to finish, the engine shuts down with its processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from quill import envs, local_auth
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from serving import auth, metrics
from serving.api_search.service import ApiSearchService, ApiTools
from serving.api_search.tools import ApiToolsConfig
from serving.completion import CompletionService
from serving.config import ServingConfig
from serving.engine.base import Engine
from serving.errors import EngineNotReadyError, ErrorInterceptor
from serving.events import EventRecorder
from serving.fim import choose_template
from serving.limits import StreamLimiter
from serving.repair.service import RepairService
from serving.request_limits import RequestLimits
from serving.retrieval_context import PromptRetriever
from serving.suggestions import SuggestionRegistry
from serving.tenant_metrics import TenantLabels
from serving.transport import bind, check_exposure, server_credentials
from serving.workspace_registry import registry_from_config

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Quill"].full_name
_HEALTH_PROBE_INTERVAL_S = 10.0
# Requests carry whole documents; the completion service enforces its own, smaller limit with
# a clear INVALID_ARGUMENT, so the transport limit only has to be above it.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# The suggestion registry's file in the data dir.
SUGGESTIONS_FILE = "suggestions.json"


class QuillServicer(quill_pb2_grpc.QuillServicer):
    """Routes RPCs to the feature services once the engine is ready."""

    def __init__(self, config: ServingConfig) -> None:
        self._config = config
        # Every request passes here first (serving/request_limits.py).
        self._limits = RequestLimits(config)
        # New at every start: a client that sees it change syncs its workspace again (the
        # process answering may not hold it: a failover behind a load balancer, a restart).
        self.instance = uuid.uuid4().hex[:16]
        self._completion: CompletionService | None = None
        # Synced workspace files and their retrieval indices (serving/workspaces.py).
        self._workspaces = registry_from_config(config.retrieval, config.limits)
        # Kept across restarts under the data dir, so events queued by editors while serving
        # was away still find their suggestions (serving/suggestions.py).
        self._suggestions = SuggestionRegistry(path=self._workspaces.data_dir / SUGGESTIONS_FILE)
        self._suggestions.load()
        self.tenant_labels = TenantLabels(config.metrics_tenant_labels)
        self._events = EventRecorder(self._suggestions, self.tenant_labels)
        self._repair: RepairService | None = None
        # API catalogs per workspace (serving/api_search/); needs no engine.
        self._api_search = ApiSearchService(
            lambda: self._workspaces.embedder,
            # Derived from the interpreter and the embedding model only (the cache key says
            # which), so every data dir and test session shares one copy.
            envs.cache_dir() / "api-stdlib",
            self._workspaces,
            config.api_search,
            query_embedder=lambda: self._workspaces.query_embedder,
        )

    def attach_engine(self, engine: Engine) -> None:
        template = choose_template(
            self._config.completion.fim_template,
            self._config.engine.model,
            self._config.engine.served_model_name or "",
        )
        logger.info("prompt template: %s", template.name)
        self._completion = CompletionService(
            engine,
            self._config.completion,
            self._suggestions,
            template,
            workspaces=PromptRetriever(self._workspaces, self._config.retrieval),
            api_tools=ApiTools(
                self._api_search, ApiToolsConfig(auto_mode=self._config.api_auto_mode)
            ),
        )
        self._repair = RepairService(engine, self._config.repair)

    async def Complete(  # noqa: N802 - the gRPC method name
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CompleteResponse]:
        self._limits.check(request)
        if self._completion is None:
            raise EngineNotReadyError("the engine is still loading")
        async for response in self._completion.complete(request, context, auth.current_tenant()):
            if response.HasField("done"):
                response.done.serving_instance = self.instance
            yield response

    async def Repair(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.RepairClientMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.RepairServerMessage]:
        if self._repair is None:
            raise EngineNotReadyError("the engine is still loading")
        checked = self._limits.checked_repair_stream(request_iterator)
        async for message in self._repair.repair(checked, context):
            yield message

    async def SyncWorkspace(  # noqa: N802
        self, request: pb.SyncWorkspaceRequest, context: grpc.aio.ServicerContext
    ) -> pb.SyncWorkspaceResponse:
        # Needs no engine: editors sync while the model is still loading.
        self._limits.check(request)
        response = await self._workspaces.sync(auth.current_tenant(), request)
        response.serving_instance = self.instance
        return response

    async def SearchApi(  # noqa: N802
        self, request: pb.SearchApiRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchApiResponse:
        # Needs no engine: the catalog has its own embedding model.
        self._limits.check(request)
        return await self._api_search.handle(auth.current_tenant(), request)

    async def keep_suggestions_saved(self) -> None:
        """Save the suggestion registry periodically (a background task while serving)."""
        await self._suggestions.save_periodically()

    async def close(self) -> None:
        """Save what is indexed and stop background work (on shutdown)."""
        self._suggestions.save()
        if self._repair is not None:
            await self._repair.close()
        await self._api_search.close()
        await self._workspaces.close()

    async def ReportEvents(  # noqa: N802
        self, request: pb.ReportEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportEventsResponse:
        self._limits.check(request)
        response = self._events.record(auth.current_tenant(), request)
        response.serving_instance = self.instance
        return response


async def serve(
    config: ServingConfig,
    start_engine: Callable[[], Engine],
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or until `stop` is set, when given).

    `start_engine` is blocking and runs in a worker thread.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

    tokens = auth.token_store(
        config.security.token_file,
        envs.token(),
        lambda: local_auth.ensure_secret(local_auth.local_token_path()),
    )
    operator_tokens = config.security.token_file is not None or bool(envs.token())
    check_exposure(config.address, config.security, operator_tokens)
    credentials = server_credentials(config.security)
    health_servicer = health.aio.HealthServicer()
    servicer = QuillServicer(config)
    server = _quill_server(config, servicer, health_servicer, tokens)
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    if config.metrics_address:
        metrics.start_metrics_server(config.metrics_address)
    bind(server, config.address, credentials)
    health_server = _health_server(config.health_address, health_servicer)
    await server.start()
    if health_server is not None:
        await health_server.start()
    logger.info(
        "gRPC listening on %s%s (NOT_SERVING until the engine is ready); %d tenants; instance %s",
        config.address,
        " with TLS" if credentials is not None else "",
        len(tokens.tenants),
        servicer.instance,
    )

    engine: Engine | None = None
    saving = asyncio.create_task(servicer.keep_suggestions_saved())
    loading = asyncio.ensure_future(asyncio.to_thread(start_engine))
    stopping = asyncio.ensure_future(stop.wait())
    probe: asyncio.Task[None] | None = None
    try:
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        # A signal during loading still waits for the engine, so it can be shut down cleanly.
        engine = await loading
        if not stop.is_set():
            servicer.attach_engine(engine)
            await _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
            metrics.ENGINE_READY.set(1)
            logger.info("engine ready: serving %s on %s", engine.model_name, config.address)
            probe = asyncio.create_task(_probe_engine(engine, health_servicer))
            await stopping
        logger.info("shutting down")
    finally:
        stopping.cancel()
        saving.cancel()
        if probe is not None:
            probe.cancel()
        metrics.ENGINE_READY.set(0)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(config.shutdown_grace_s)
        if health_server is not None:
            await health_server.stop(0)
        await servicer.close()
        if engine is None and loading.done() and not loading.cancelled():
            with contextlib.suppress(BaseException):
                engine = loading.result()
        if engine is not None:
            engine.shutdown()
        logger.info("stopped")


def _quill_server(
    config: ServingConfig,
    servicer: QuillServicer,
    health_servicer: health.aio.HealthServicer,
    tokens: auth.TokenStore,
) -> grpc.aio.Server:
    """The gRPC server of the Quill service, health and (when on) reflection, behind the error
    and auth interceptors."""
    streams = StreamLimiter(config.limits.streams_per_tenant)
    open_services = [health.SERVICE_NAME]
    if config.security.reflection:
        open_services.append(reflection.SERVICE_NAME)
    server = grpc.aio.server(
        # The error interceptor is outermost: it turns the auth interceptor's refusals into
        # UNAUTHENTICATED and counts them like every other status.
        interceptors=[
            ErrorInterceptor(),
            auth.AuthInterceptor(
                tokens, open_services, streams.admit, servicer.tenant_labels.count_request
            ),
        ],
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            # A second server on a busy port must fail, not silently share it.
            ("grpc.so_reuseport", 0),
        ],
    )
    quill_pb2_grpc.add_QuillServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.security.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    return server


def _health_server(
    address: str, health_servicer: health.aio.HealthServicer
) -> grpc.aio.Server | None:
    """A plain-text port answering health only, for probes that cannot speak TLS (Kubernetes'
    gRPC probes); None without an address. It serves nothing else, so it needs no token."""
    if not address:
        return None
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind(server, address, None)
    return server


async def _set_health(servicer: health.aio.HealthServicer, status: int) -> None:
    # The empty name is the whole server; the service name is for clients that ask per service.
    await servicer.set("", status)
    await servicer.set(SERVICE_NAME, status)


async def _probe_engine(engine: Engine, health_servicer: health.aio.HealthServicer) -> None:
    """Flip health to NOT_SERVING when the engine dies, so load balancers route around it."""
    while True:
        await asyncio.sleep(_HEALTH_PROBE_INTERVAL_S)
        try:
            await engine.check_health()
        except Exception:  # noqa: BLE001 - any failure means the engine cannot serve
            logger.exception("engine health check failed")
            metrics.ENGINE_READY.set(0)
            await _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
            return
