"""The SDK's and CLI's TLS and token options, against an in-process gRPC server that records what arrives.

The server registers no Cairn service: every call is answered UNIMPLEMENTED (to the SDK an InternalError,
"Method not found!") after its metadata was recorded, which is all these tests need: what the client sends,
and over which transport. Against real nodes: tests/integration/test_tls.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from cairn import Client, InternalError, InvalidArgumentError
from cairn.cli import main
from cairn.v1 import state_pb2
from cairn_server import certs
from tests.support import wait_until


class Recorder(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def intercept_service(self, continuation, handler_call_details):  # noqa: ANN001, ANN201
        self.calls.append((handler_call_details.method, dict(handler_call_details.invocation_metadata)))
        return continuation(handler_call_details)

    def tokens(self, method_suffix: str) -> list[str | None]:
        return [md.get("authorization") for method, md in self.calls if method.endswith(method_suffix)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.ClusterTls:
    return certs.ensure_cluster_tls(tmp_path_factory.mktemp("pki") / "tls", [("node1", ())])


def start_server(pki: certs.ClusterTls, *, tls: bool) -> tuple[grpc.Server, str, Recorder]:
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[recorder])
    if tls:
        credentials = grpc.ssl_server_credentials(
            [(pki.node_key("node1").read_bytes(), pki.node_cert("node1").read_bytes())],
            root_certificates=pki.ca.read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}", recorder


@pytest.fixture
def plain(pki: certs.ClusterTls) -> Iterator[tuple[str, Recorder]]:
    server, endpoint, recorder = start_server(pki, tls=False)
    yield endpoint, recorder
    server.stop(None)


@pytest.fixture
def mtls(pki: certs.ClusterTls) -> Iterator[tuple[str, Recorder]]:
    server, endpoint, recorder = start_server(pki, tls=True)
    yield endpoint, recorder
    server.stop(None)


def test_token_is_sent_on_unary_calls_streams_and_worker_calls(plain: tuple[str, Recorder]) -> None:
    endpoint, recorder = plain
    with Client([endpoint], timeout=2, token="s3cret", stream_writes=True) as client:
        with pytest.raises(InternalError, match="Method not found"):
            client.get_state("w")
        with pytest.raises(InternalError, match="Method not found"):
            client.poll_work("worker-1", ["t"], lease_timeout=5, wait=0.1)  # what cairn.Worker calls
        with pytest.raises(Exception):  # noqa: B017 - a broken stream is retried until the deadline
            client.persist_state("w", current_step="s", timeout=0.5)
    assert recorder.tokens("/GetState") == ["Bearer s3cret"]
    assert recorder.tokens("/PollWork") == ["Bearer s3cret"]
    streamed = recorder.tokens("/PersistStream")
    assert streamed and set(streamed) == {"Bearer s3cret"}


def test_no_token_no_authorization_header(plain: tuple[str, Recorder]) -> None:
    endpoint, recorder = plain
    with Client([endpoint], timeout=2) as client, pytest.raises(InternalError, match="Method not found"):
        client.get_state("w")
    assert recorder.tokens("/GetState") == [None]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_ca_cert_key_as_paths_or_pem_bytes_make_an_mtls_connection(
    mtls: tuple[str, Recorder], pki: certs.ClusterTls, as_bytes: bool
) -> None:
    endpoint, recorder = mtls

    def src(path: Path) -> Path | bytes:
        return path.read_bytes() if as_bytes else path

    with (
        Client([endpoint], timeout=2, ca=src(pki.ca), cert=src(pki.admin_cert), key=src(pki.admin_key)) as client,
        pytest.raises(
            InternalError, match="Method not found"
        ),  # UNIMPLEMENTED comes from the server: the handshake succeeded
    ):
        client.get_state("w")
    assert recorder.tokens("/GetState") == [None]


def test_without_a_client_certificate_or_without_tls_the_mtls_server_is_unavailable(
    mtls: tuple[str, Recorder], pki: certs.ClusterTls
) -> None:
    endpoint, recorder = mtls
    for kwargs in ({"ca": pki.ca}, {}):
        with Client([endpoint], timeout=1, **kwargs) as client, pytest.raises(Exception) as info:
            client.get_state("w")
        assert info.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), info.value  # type: ignore[attr-defined]
    assert recorder.calls == []


def test_bad_tls_arguments_are_invalid_argument(pki: certs.ClusterTls, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="both cert and key"):
        Client(["127.0.0.1:1"], ca=pki.ca, cert=pki.admin_cert)
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        Client(["127.0.0.1:1"], ca=tmp_path / "missing.pem")
    with pytest.raises(InvalidArgumentError, match="not both"):
        Client(["127.0.0.1:1"], ca=pki.ca, credentials=grpc.ssl_channel_credentials())
    with pytest.raises(InvalidArgumentError, match="single line"):
        Client(["127.0.0.1:1"], token="a\nb")


def test_cli_flags_and_env_vars_carry_tls_and_token(mtls: tuple[str, Recorder], pki: certs.ClusterTls) -> None:
    endpoint, recorder = mtls
    runner = CliRunner()
    base = ["state", "get", "w", "--endpoints", endpoint, "--json", "--timeout", "2"]
    flags = ["--ca", str(pki.ca), "--cert", str(pki.admin_cert), "--key", str(pki.admin_key), "--token", "t1"]
    result = runner.invoke(main, [*base, *flags])
    assert result.exit_code == 1 and "Method not found" in result.output, result.output
    env = {"CAIRN_CA": str(pki.ca), "CAIRN_CERT": str(pki.admin_cert), "CAIRN_KEY": str(pki.admin_key)}
    result = runner.invoke(main, base, env={**env, "CAIRN_TOKEN": "t2"})
    assert result.exit_code == 1 and "Method not found" in result.output, result.output
    assert recorder.tokens("/GetState") == ["Bearer t1", "Bearer t2"]
    result = runner.invoke(main, base)  # plaintext to a TLS server: never reaches it
    assert result.exit_code == 1 and "Method not found" not in result.output
    result = runner.invoke(main, [*base, "--cert", str(pki.admin_cert)])
    assert result.exit_code == 2 and "--cert and --key go together" in result.output
    assert len(recorder.calls) == 2


def test_worker_run_takes_the_same_options() -> None:
    result = CliRunner().invoke(main, ["worker", "run", "--help"])
    for option in ("--ca", "--cert", "--key", "--token", "CAIRN_CA", "CAIRN_TOKEN"):
        assert option in result.output


def test_stream_reconnects_carry_the_token(plain: tuple[str, Recorder]) -> None:
    endpoint, recorder = plain
    request = state_pb2.PersistStateRequest(workflow_id="w", request_id="r1")
    with Client([endpoint], timeout=1, token="tk", stream_writes=True) as client:
        assert client._stream is not None
        with pytest.raises(Exception):  # noqa: B017 - every attempt ends UNIMPLEMENTED and is retried
            client._stream.persist(request, 1.0)
    wait_until(lambda: len(recorder.tokens("/PersistStream")) >= 2, 5, "the stream was not reopened")
    assert set(recorder.tokens("/PersistStream")) == {"Bearer tk"}
