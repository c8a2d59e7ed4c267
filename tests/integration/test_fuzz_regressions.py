"""What the API fuzz test (tests/fuzz_api.py) found, pinned: each once answered with an imprecise code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cairn.v1 import audit_pb2, audit_pb2_grpc, auth_pb2, auth_pb2_grpc, cluster_pb2, cluster_pb2_grpc
from tests.support import ClusterHandle, start_cluster

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    with closing(start_cluster(tmp_path_factory.mktemp("fz"), nodes=1)) as handle:
        yield handle


@pytest.fixture(scope="module")
def channel(node: ClusterHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(node.endpoint(0)) as ch:
        yield ch


def raw_code(channel: grpc.Channel, method: str, payload: bytes, *, streaming: bool) -> tuple[grpc.StatusCode, str]:
    call = (channel.unary_stream if streaming else channel.unary_unary)(method)
    try:
        result = call(payload, timeout=10)
        if streaming:
            list(result)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize(
    "method",
    ["/cairn.v1.AuditService/ExportAudit", "/grpc.health.v1.Health/Watch"],
)
def test_an_undecodable_request_to_a_server_stream_is_invalid_argument(channel: grpc.Channel, method: str) -> None:
    code, details = raw_code(channel, method, b"\x00", streaming=True)
    assert code == INVALID and "could not be decoded" in details


def test_an_undecodable_reflection_message_is_invalid_argument(channel: grpc.Channel) -> None:
    call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    with pytest.raises(grpc.RpcError) as err:
        list(call(iter([b"\x00"]), timeout=10))
    assert err.value.code() == INVALID and "could not be decoded" in err.value.details()


def test_the_largest_after_seq_lists_nothing(channel: grpc.Channel) -> None:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    assert list(stub.ListAudit(audit_pb2.ListAuditRequest(after_seq=2**64 - 1), timeout=10).records) == []
    assert list(stub.ExportAudit(audit_pb2.ExportAuditRequest(after_seq=2**64 - 1), timeout=10)) == []


def test_long_names_get_their_own_code_not_a_metadata_overflow(channel: grpc.Channel) -> None:
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    cluster = cluster_pb2_grpc.ClusterServiceStub(channel)
    for call, request in (
        (auth.DeleteRole, auth_pb2.DeleteRoleRequest(name="é" * 5000)),
        (auth.RevokeToken, auth_pb2.RevokeTokenRequest(token_id="a" * 20000)),
        (auth.Bind, auth_pb2.BindRequest(identity="x", role="é" * 5000)),
        (cluster.TransferLeadership, cluster_pb2.TransferLeadershipRequest(node_id="é" * 5000)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=10)
        assert err.value.code() == INVALID, (request.DESCRIPTOR.name, err.value.code(), err.value.details()[:200])
        assert len(err.value.details()) < 400
    with pytest.raises(grpc.RpcError) as err:
        auth.DeleteRole(auth_pb2.DeleteRoleRequest(name="r" * 128), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "…" in err.value.details()


def test_an_unknown_health_service_is_not_found_with_a_message(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "'nope'" in err.value.details()
