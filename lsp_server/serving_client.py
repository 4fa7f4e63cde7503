"""The language server's connection to serving: one gRPC channel, availability and backoff.

While serving is unreachable or still loading, the user is told once per outage and two things
look for its return (docs/reliability.md, "Outages and recovery"):
- a background probe checks health until serving answers SERVING again; each check waits for
  the channel to reconnect (so a return is seen at once), and quick answers (serving up but
  still loading) are spaced by capped exponential backoff (tenacity, at most `BACKOFF_MAX_S`);
- a request that arrives meanwhile probes at once, at most once per `PROBE_MIN_INTERVAL_S`
  and for at most `PROBE_TIMEOUT_S`, and goes ahead when serving is back; otherwise it
  returns at once with nothing (an editor must never wait on a dead backend).
Connection attempts to a dead address are paced by the channel's own reconnect backoff (at
most `_MAX_RECONNECT_BACKOFF_MS` apart), whatever asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quill.channel import ClientSecurity, open_channel
from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc

if TYPE_CHECKING:
    from tenacity.wait import wait_base

logger = logging.getLogger(__name__)

# The background probe's backoff while serving is down: 0.25 s, doubling, capped.
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 2.0
# A request while serving is down probes at most this often, for at most this long.
PROBE_MIN_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 0.5
# The channel reconnects at most this far apart, so serving is found within about a second of
# coming back, and a dead address sees one connection attempt a second at most.
_MAX_RECONNECT_BACKOFF_MS = 1000
# Codes that mean serving is not there (or not ready). A DEADLINE_EXCEEDED is one slow
# request on a busy server, not an outage: that request gets no items and the next one is tried.
_UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED)
# Codes that mean serving is there but refuses this client (its token, or a cap): the user is
# told once until a call succeeds again, and every call is still tried (a token may be added
# on serving's side at any time).
_REFUSED_CODES = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


@dataclass
class Completion:
    text: str
    done: pb.CompletionDone


class ServingUnavailableError(RuntimeError):
    pass


def backoff(max_s: float = BACKOFF_MAX_S) -> wait_base:
    """The one backoff policy of the language server's retries (this probe, the workspace
    sync): exponential from BACKOFF_START_S, capped at `max_s`, with a little jitter."""
    from tenacity import wait_exponential_jitter  # lazily: only needed once something fails

    return wait_exponential_jitter(initial=BACKOFF_START_S, max=max_s, jitter=BACKOFF_START_S)


def is_unavailable(error: grpc.aio.AioRpcError) -> bool:
    return error.code() in _UNAVAILABLE_CODES


class ServingClient:
    def __init__(
        self,
        address: str,
        notify: Callable[[str, bool], None],
        security: ClientSecurity | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`notify(message, is_error)` tells the user about outages and recoveries;
        `security`: token and TLS (None: the defaults for `address`, quill/channel.py)."""
        self.address = address
        self._notify = notify
        self._clock = clock
        self._refused: str | None = None
        self._channel = self._open_channel(address, security, max_message_bytes)
        self._stub = quill_pb2_grpc.QuillStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._down_reason: str | None = None
        self._back = asyncio.Event()
        self._back.set()
        self._probe: asyncio.Task[None] | None = None
        # The probe a request started, and when: requests share it and are rate-limited.
        self._request_probe: asyncio.Task[bool] | None = None
        self._request_probe_at = float("-inf")
        self.probes = 0  # health checks sent while down (tests: no hammering)
        # The serving process that answered last (CompletionDone.serving_instance and the like),
        # and who wants to know when another one answers (a failover, a restart).
        self.serving_instance: str | None = None
        self.instance_listeners: list[Callable[[str], None]] = []

    @staticmethod
    def _open_channel(
        address: str, security: ClientSecurity | None, max_message_bytes: int
    ) -> grpc.aio.Channel:
        return open_channel(
            address,
            security,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                # Reconnect quickly once serving is back; the probes below pace the checks.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
            ],
        )

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
        if not await self.usable():
            return None
        call = self._stub.Complete(
            request, timeout=timeout_s, metadata=routing_metadata(request.workspace_id)
        )
        try:
            async for response in call:
                if response.HasField("done"):
                    self._refused = None
                    self.observe_instance(response.done.serving_instance)
                    return Completion(text=response.done.text, done=response.done)
                if on_delta is not None:
                    on_delta(response.delta)
            raise ServingUnavailableError("serving closed the stream without a final message")
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as error:
            if self.note_failure(error):
                return None
            if error.code() in _REFUSED_CODES:
                self._mark_refused(f"{error.code().name}: {error.details()}")
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
        if not await self.usable():
            return False
        try:
            answer = await self._stub.ReportEvents(
                request, timeout=timeout_s, metadata=routing_metadata(workspace_id)
            )
        except grpc.aio.AioRpcError as error:
            if not self.note_failure(error):
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

    async def usable(self) -> bool:
        """Whether to call serving now: yes while it is up; while it is down, only when a probe
        (started here, or one already under way) finds it back."""
        if self._down_reason is None:
            return True
        probe = self._request_probe
        if probe is None or probe.done():
            now = self._clock()
            if now - self._request_probe_at < PROBE_MIN_INTERVAL_S:
                return False
            self._request_probe_at = now
            probe = self._request_probe = asyncio.ensure_future(self._probe_once(PROBE_TIMEOUT_S))
        return await asyncio.shield(probe)

    async def wait_until_available(self) -> None:
        """Return once serving is up (at once while it is)."""
        await self._back.wait()

    def note_failure(self, error: grpc.aio.AioRpcError) -> bool:
        """A call failed: when the code means serving is not there, mark it down (and start
        probing); returns whether it did."""
        if not is_unavailable(error):
            return False
        self._mark_down(f"{error.code().name}: {error.details()}")
        return True

    async def check_health(self, timeout_s: float = 2.0, wait_for_ready: bool = False) -> bool:
        """Whether serving answers SERVING within `timeout_s`; `wait_for_ready`: wait for the
        channel to (re)connect meanwhile instead of failing at once."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s, wait_for_ready=wait_for_ready
            )
        except grpc.aio.AioRpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    async def start(self) -> None:
        """Check serving once at start-up so the user hears early if it is not there."""
        if not await self.check_health():
            self._mark_down("not reachable or still loading")

    def _mark_refused(self, reason: str) -> None:
        if self._refused is None:
            logger.warning("serving at %s refused a completion (%s)", self.address, reason)
            self._notify(f"Quill: serving at {self.address} refused this client ({reason}).", True)
        self._refused = reason

    def _mark_down(self, reason: str) -> None:
        if self._down_reason is None:
            self._down_reason = reason
            self._back.clear()
            logger.warning("serving at %s unavailable (%s)", self.address, reason)
            self._notify(
                f"Quill: serving at {self.address} is unavailable ({reason}); "
                "completions resume when it is back.",
                True,
            )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Probe until serving is back. Each probe waits up to BACKOFF_MAX_S for the channel
        to reconnect (so serving is seen the moment a connection succeeds; the channel's own
        backoff paces the attempts), and the next one starts after the backoff's pause minus
        the time already waited: a quick answer (serving up, still loading) is not repeated
        faster than the backoff allows."""
        from tenacity import AsyncRetrying, retry_if_exception_type, retry_if_result

        waited = 0.0
        pause = backoff()

        async def probe() -> bool:
            nonlocal waited
            started = self._clock()
            try:
                return await self._probe_once(BACKOFF_MAX_S, wait_for_ready=True)
            finally:
                waited = self._clock() - started

        await asyncio.sleep(BACKOFF_START_S)  # the call that found serving down just failed
        retrying = AsyncRetrying(
            wait=lambda state: max(0.0, pause(state) - waited),
            # Until serving is back, whatever a probe meets: this task must not die.
            retry=retry_if_result(lambda up: not up) | retry_if_exception_type(Exception),
        )
        await retrying(probe)

    async def _probe_once(self, timeout_s: float, wait_for_ready: bool = False) -> bool:
        """One health check while down; marks serving up when it answers SERVING."""
        if self._down_reason is None:
            return True
        self.probes += 1
        if not await self.check_health(timeout_s, wait_for_ready):
            return False
        self._mark_up()
        return True

    def _mark_up(self) -> None:
        if self._down_reason is None:
            return
        logger.info("serving at %s is back", self.address)
        self._down_reason = None
        self._back.set()
        self._notify(f"Quill: connected to serving at {self.address}.", False)

    async def close(self) -> None:
        for task in (self._probe, self._request_probe):
            if task is not None:
                task.cancel()
        await self._channel.close()
