"""RenderStreams that send nothing, as a hostile or forgetful client holds them: raw stubs, each
stream open until the server ends it or :meth:`IdleStreams.close`."""

from __future__ import annotations

import threading

import grpc

from heatmap.v1 import heatmap_pb2_grpc as pb_grpc

__all__ = ["IdleStreams", "connection"]


def connection(target: str) -> grpc.Channel:
    """A channel on a connection of its own: gRPC otherwise shares one connection among the
    channels of a process that have the same target and arguments."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


class IdleStreams:
    """``count`` RenderStreams spread over ``connections`` connections, sending nothing."""

    def __init__(self, target: str, count: int, connections: int = 1, timeout: float = 120.0):
        self._senders: list[tuple[grpc.Call, threading.Event]] = []
        self.channels = [connection(target) for _ in range(connections)]
        self._stubs = [pb_grpc.HeatmapRendererStub(channel) for channel in self.channels]
        self._timeout = timeout
        self.calls: list[grpc.Call] = []
        self.open(count)

    def open(self, count: int) -> list[grpc.Call]:
        """``count`` more streams, spread over the same connections; returns them."""
        more = []
        for index in range(count):
            done_sending = threading.Event()
            stub = self._stubs[index % len(self._stubs)]
            call = stub.RenderStream(self._nothing(done_sending), timeout=self._timeout)
            self._senders.append((call, done_sending))
            more.append(call)
        self.calls += more
        return more

    @staticmethod
    def _nothing(done_sending: threading.Event):
        # gRPC's request thread waits here: the stream sends nothing, and does not half-close
        # until it is told to.
        done_sending.wait()
        yield from ()

    def half_close(self, calls: list[grpc.Call]) -> None:
        """``calls`` end their requests: the server answers them (nothing) and ends them OK."""
        chosen = {id(call) for call in calls}
        for call, done_sending in self._senders:
            if id(call) in chosen:
                done_sending.set()

    def ended(self) -> list[grpc.Call]:
        """The calls the server has ended so far."""
        return [call for call in self.calls if call.done()]

    def close(self) -> None:
        for call, done_sending in self._senders:
            call.cancel()
            done_sending.set()
        for channel in self.channels:
            channel.close()

    def __enter__(self) -> IdleStreams:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
