"""The protos are a contract for every language: plain protoc compiles them; nodes serve health and reflection."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.support import ClusterHandle

ROOT = Path(__file__).resolve().parents[2]
STATE_METHODS = {
    "PersistState",
    "PersistStream",
    "GetState",
    "DeleteWorkflow",
    "ListWorkflows",
    "CreateCheckpoint",
    "ListCheckpoints",
    "GetCheckpoint",
    "RecoverFromCheckpoint",
    "SynchronizeState",
    "ValidateState",
}


def system_protoc() -> str:
    """The system protoc: "plain protoc" is what another language's build uses, not grpcio-tools' copy."""
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.fail("protoc not found: install protobuf-compiler (apt-get install protobuf-compiler; .ci/run does)")
    return protoc


def test_public_protos_compile_with_plain_protoc(tmp_path: Path) -> None:
    out = tmp_path / "api.pb"
    files = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos" / "cairn" / "v1").glob("*.proto"))
    protoc = system_protoc()
    proc = subprocess.run(
        [protoc, "-Iprotos", "--include_imports", f"--descriptor_set_out={out}", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"{proc.stderr}\n(google/protobuf/*.proto not found? apt-get install libprotobuf-dev)"
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    services = {f"{f.package}.{s.name}": {m.name for m in s.method} for f in fds.file for s in f.service}
    assert services["cairn.v1.StateService"] == STATE_METHODS
    cluster_methods = {"Status", "Snapshot", "TransferLeadership", "RotateKeys", "KeyStatus"}
    assert services["cairn.v1.ClusterService"] == cluster_methods
    assert {"cairn.v1.AuthService", "cairn.v1.AuditService"} <= set(services)
    # The system protoc carries other languages' generators too: each must accept the protos.
    for language in ("--cpp_out", "--java_out", "--csharp_out"):
        target = tmp_path / language.strip("-")
        target.mkdir()
        proc = subprocess.run(
            [protoc, "-Iprotos", f"{language}={target}", *files], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, (language, proc.stderr)
        assert any(target.rglob("*")), language


def test_generated_code_is_current() -> None:
    proc = subprocess.run([sys.executable, "protos/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_health_checking_and_reflection(shared_cluster: ClusterHandle) -> None:
    channel = grpc.insecure_channel(shared_cluster.endpoint(1))
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "cairn.v1.StateService", "cairn.v1.ClusterService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    db = ProtoReflectionDescriptorDatabase(channel)
    assert {"cairn.v1.StateService", "cairn.v1.ClusterService", "grpc.health.v1.Health"} <= set(db.get_services())
    pool = descriptor_pool.DescriptorPool(db)
    service = pool.FindServiceByName("cairn.v1.StateService")
    assert {m.name for m in service.methods} == STATE_METHODS
    assert pool.FindMessageTypeByName("cairn.v1.WorkflowState").fields_by_name["variables"]


def test_importing_the_sdk_never_imports_the_server() -> None:
    code = (
        "import sys, cairn, cairn.cli; assert not any(m.startswith('cairn_server') for m in sys.modules), sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
