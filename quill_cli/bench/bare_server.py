"""A bare grpc.aio server of Quill's contract that does no work: the baseline of `quill bench
load`, run as `python -m quill_cli.bench.bare_server --address HOST:PORT ...`.

Complete keeps the simulated engine's pace (the first token after `--ttft-ms`, then one token per
`--tpot-ms`, in steps shared by all calls, as serving/engine/simulated.py does) and sends as many
messages per call as Quill's serving sent in the simulated run it is compared with, then a
CompletionDone; there is no tokenizer, prompt, retrieval, engine or post-processing.
SyncWorkspace and ReportEvents answer at once, health says SERVING. Whatever Quill's serving
costs above this under the same load is the cost of its own layers; this is the stack's limit
(grpc.aio and the same client) on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from serving.engine.simulated import StepClock


class BareServicer(quill_pb2_grpc.QuillServicer):
    def __init__(self, args: argparse.Namespace) -> None:
        self._ttft_s = args.ttft_ms / 1e3
        self._clock = StepClock(args.tpot_ms / 1e3)
        self._shape = {
            False: (args.single_tokens, args.single_messages),
            True: (args.multi_tokens, args.multi_messages),
        }
        self._instance = uuid.uuid4().hex[:16]

    async def Complete(  # noqa: N802 - the gRPC method name
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CompleteResponse]:
        tokens, messages = self._shape[request.mode == pb.COMPLETION_MODE_MULTI_LINE]
        suggestion_id = uuid.uuid4().hex
        every = max(1, tokens // max(1, messages))
        self._clock.running += 1
        try:
            await asyncio.sleep(self._ttft_s)
            for produced in range(1, tokens + 1):
                if produced > 1:
                    await self._clock.step()
                if produced % every == 0:
                    yield pb.CompleteResponse(
                        delta=pb.TextDelta(
                            text="x", suggestion_id=suggestion_id, completion_tokens=produced
                        )
                    )
        finally:
            self._clock.running -= 1
        yield pb.CompleteResponse(
            done=pb.CompletionDone(
                suggestion_id=suggestion_id,
                text="x" * max(1, messages),
                completion_tokens=tokens,
                finish_reason="stop",
                model="bare",
                mode=request.mode,
                serving_instance=self._instance,
            )
        )

    async def SyncWorkspace(  # noqa: N802
        self, request: pb.SyncWorkspaceRequest, context: grpc.aio.ServicerContext
    ) -> pb.SyncWorkspaceResponse:
        return pb.SyncWorkspaceResponse(serving_instance=self._instance)

    async def ReportEvents(  # noqa: N802
        self, request: pb.ReportEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportEventsResponse:
        return pb.ReportEventsResponse(
            recorded=len(request.events), serving_instance=self._instance
        )


async def serve(args: argparse.Namespace) -> None:
    server = grpc.aio.server()
    quill_pb2_grpc.add_QuillServicer_to_server(BareServicer(args), server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if not server.add_insecure_port(args.address):
        raise SystemExit(f"cannot listen on {args.address}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True)
    p.add_argument("--ttft-ms", type=float, required=True)
    p.add_argument("--tpot-ms", type=float, required=True)
    p.add_argument("--single-tokens", type=int, default=10)
    p.add_argument("--single-messages", type=int, default=10)
    p.add_argument("--multi-tokens", type=int, default=40)
    p.add_argument("--multi-messages", type=int, default=5)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
