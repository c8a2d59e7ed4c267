"""Follower to leader: a write received by a follower is sent on to the leader over gRPC.

The caller's deadline travels with it, the request (and its request_id) is unchanged, and the
leader's answer or error is relayed as is, with the leader's address for the SDK to use next time.
A forwarded request that reaches a node that is no longer leader is answered UNAVAILABLE with a
hint instead of hopping again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from cairn.client import open_channel
from cairn.v1 import state_pb2_grpc

from .errors import Unavailable
from .rpc.status import FORWARDED_KEY, PassThrough

_MARGIN = 0.05
_NO_DEADLINE = 365 * 24 * 3600.0


class Forwarder:
    def __init__(self, default_timeout: float, credentials: grpc.ChannelCredentials | None = None):
        self._default_timeout = default_timeout
        self._credentials = credentials
        self._channels: dict[str, grpc.Channel] = {}
        # Channels made with credentials since replaced. Not closed at once: closing (or dropping, whose
        # __del__ closes) a channel cancels the calls still on it, and a forwarded long poll may run for
        # its caller's whole deadline. Idle, they hold no connection after gRPC's idle timeout; close() ends them.
        self._retired: list[grpc.Channel] = []
        self._lock = threading.Lock()

    def channel(self, address: str) -> grpc.Channel:
        """The node's one channel to a peer, shared by forwarding and node-to-node calls."""
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = self._channels[address] = open_channel(address, self._credentials)
            return channel

    def set_credentials(self, credentials: grpc.ChannelCredentials | None) -> None:
        """New calls to peers use these (a rotated node certificate); calls in flight finish on their channel."""
        with self._lock:
            self._credentials = credentials
            self._retired.extend(self._channels.values())
            self._channels = {}

    @staticmethod
    def was_forwarded(context: grpc.ServicerContext) -> bool:
        return any(k == FORWARDED_KEY for k, _ in context.invocation_metadata())

    def forward(
        self,
        method: str,
        request,
        context: grpc.ServicerContext,
        leader_grpc: str | None,
        stub: Callable[[grpc.Channel], Any] = state_pb2_grpc.StateServiceStub,
        metadata: tuple[tuple[str, str], ...] = (),
    ):
        """`metadata`: sent along (the caller's signed identity, auth/identity.py)."""
        if leader_grpc is None:
            raise Unavailable("this node is not the leader and no leader is known (election in progress?)")
        if self.was_forwarded(context):
            raise Unavailable("this node is no longer the leader", leader=None)
        remaining = context.time_remaining()
        # Without a caller deadline gRPC reports ~2**63 ns remaining, which as a timeout has already expired.
        no_deadline = remaining is None or remaining > _NO_DEADLINE
        timeout = self._default_timeout if no_deadline else max(0.001, remaining - _MARGIN)
        call = getattr(stub(self.channel(leader_grpc)), method).future(
            request, timeout=timeout, metadata=((FORWARDED_KEY, "1"), *metadata)
        )
        # A caller that goes away (a killed worker's long poll) cancels the forwarded call too, so the leader
        # stops waiting on its behalf instead of claiming work for nobody.
        context.add_callback(call.cancel)
        try:
            return call.result()
        except grpc.FutureCancelledError:
            raise Unavailable("the caller cancelled the request") from None
        except grpc.RpcError as err:
            if (
                err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                and not err.trailing_metadata()
            ):
                raise Unavailable(
                    f"could not reach the leader at {leader_grpc}: {err.details()}; "
                    "the outcome is unknown (retry with the same request_id)"
                ) from None
            raise PassThrough(err) from None

    def close(self) -> None:
        with self._lock:
            channels, self._channels = [*self._channels.values(), *self._retired], {}
            self._retired = []
        for channel in channels:
            channel.close()
