"""The language server's connection to serving: one gRPC channel, availability and backoff.

While serving is unreachable or still loading, completions return at once with nothing (an
editor must never wait on a dead backend), the user is told once per outage, and a background
probe checks health with exponential backoff until serving answers SERVING again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc

logger = logging.getLogger(__name__)

_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 30.0
# Codes that mean serving is not there (or not ready). A DEADLINE_EXCEEDED is one slow
# request on a busy server, not an outage: that request gets no items and the next one is tried.
_UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED)


@dataclass
class Completion:
    text: str
    done: pb.CompletionDone


class ServingUnavailableError(RuntimeError):
    pass


class ServingClient:
    def __init__(
        self,
        address: str,
        notify: Callable[[str, bool], None],
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """`notify(message, is_error)` tells the user about outages and recoveries."""
        self.address = address
        self._notify = notify
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # Reconnect quickly once serving is back; the probe below paces the checks.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 5000),
            ],
        )
        self._stub = quill_pb2_grpc.QuillStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._down_reason: str | None = None
        self._probe: asyncio.Task[None] | None = None
        # The serving process that answered last (CompletionDone.serving_instance and the like),
        # and who wants to know when another one answers (a failover, a restart).
        self.serving_instance: str | None = None
        self.instance_listeners: list[Callable[[str], None]] = []

    @property
    def available(self) -> bool:
        return self._down_reason is None

    @property
    def stub(self) -> quill_pb2_grpc.QuillStub:
        """The channel's stub, for calls driven elsewhere (the Repair stream)."""
        return self._stub

    async def complete(
        self,
        request: pb.CompleteRequest,
        timeout_s: float,
        on_delta: Callable[[pb.TextDelta], None] | None = None,
    ) -> Completion | None:
        """Run one completion; None when serving is down (already reported to the user).

        `on_delta` sees the text as it streams (multi-line: whole lines). Cancelling the
        awaiting task cancels the RPC, which aborts the engine request.
        """
        if self._down_reason is not None:
            return None
        call = self._stub.Complete(
            request, timeout=timeout_s, metadata=routing_metadata(request.workspace_id)
        )
        try:
            async for response in call:
                if response.HasField("done"):
                    self.observe_instance(response.done.serving_instance)
                    return Completion(text=response.done.text, done=response.done)
                if on_delta is not None:
                    on_delta(response.delta)
            raise ServingUnavailableError("serving closed the stream without a final message")
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNAVAILABLE_CODES:
                self._mark_down(f"{error.code().name}: {error.details()}")
                return None
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                logger.info("completion timed out after %.1f s", timeout_s)
                return None
            raise
        finally:
            if not call.done():
                call.cancel()

    async def report_events(
        self, request: pb.ReportEventsRequest, workspace_id: str = "", timeout_s: float = 5.0
    ) -> bool:
        """Deliver one batch of events; False when serving did not take it. Routed like the
        workspace's completions, to the replica that issued its suggestions."""
        if self._down_reason is not None:
            return False
        try:
            answer = await self._stub.ReportEvents(
                request, timeout=timeout_s, metadata=routing_metadata(workspace_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNAVAILABLE_CODES:
                self._mark_down(f"{error.code().name}: {error.details()}")
            else:
                logger.warning("ReportEvents failed: %s", error.code().name)
            return False
        self.observe_instance(answer.serving_instance)
        return True

    def observe_instance(self, instance: str) -> None:
        """Note which serving process answered; tell the listeners when it is another one."""
        if not instance or instance == self.serving_instance:
            return
        previous, self.serving_instance = self.serving_instance, instance
        if previous is not None:
            logger.info("serving instance %s answers now (was %s)", instance, previous)
        for listener in list(self.instance_listeners):
            listener(instance)

    async def check_health(self, timeout_s: float = 2.0) -> bool:
        try:
            response = await self._health.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    async def start(self) -> None:
        """Check serving once at start-up so the user hears early if it is not there."""
        if not await self.check_health():
            self._mark_down("not reachable or still loading")

    def _mark_down(self, reason: str) -> None:
        if self._down_reason is None:
            self._down_reason = reason
            logger.warning("serving at %s unavailable (%s)", self.address, reason)
            self._notify(
                f"Quill: serving at {self.address} is unavailable ({reason}); "
                "completions resume when it is back.",
                True,
            )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = _BACKOFF_START_S
        while True:
            await asyncio.sleep(delay)
            if await self.check_health():
                logger.info("serving at %s is back", self.address)
                self._down_reason = None
                self._notify(f"Quill: connected to serving at {self.address}.", False)
                return
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self._channel.close()
