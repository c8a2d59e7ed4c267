"""Write the Python code generated from protos/: the public API into client/, the node's internals into server/,
and the etcd API subset that `python -m bench compare` speaks into bench/ (at the repository root).

Proto paths match import paths (`-I protos`), so `cairn/v1/state.proto` becomes the module
`cairn.v1.state_pb2` (the SDK), `cairn_server/internal/command.proto` becomes
`cairn_server.internal.command_pb2` (the node only: log entries, snapshots, node-to-node RPCs) and
`bench/etcdserverpb/rpc.proto` becomes `bench.etcdserverpb.rpc_pb2` (proto package `etcdserverpb`, as
etcd's own), with no import rewriting. `--check` regenerates into a temporary directory and fails when the committed
files differ, so CI catches stale code.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
# Each generated package and the source root it is written under.
GENERATED_PACKAGES = {
    "cairn/v1": ROOT / "client",
    "cairn_server/internal": ROOT / "server",
    "bench/etcdserverpb": ROOT,
}
INIT_TEXT = '"""Generated from protos/ by protos/generate.py; do not edit."""\n'


def proto_files(package: str) -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / package).glob("*.proto"))


def generate(out_for: dict[str, Path]) -> None:
    include = str(Path(protoc.__file__).parent / "_proto")
    for package, out in out_for.items():
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *proto_files(package),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        (out / package / "__init__.py").write_text(INIT_TEXT)


def generated_files(out_for: dict[str, Path]) -> dict[str, Path]:
    """Generated file (package-relative name) -> its path."""
    files: dict[str, Path] = {}
    for package, root in out_for.items():
        for path in (root / package).glob("*"):
            if path.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")) or path.name == "__init__.py":
                files[str(path.relative_to(root))] = path
    return files


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_roots = {package: Path(tmp) for package in GENERATED_PACKAGES}
        generate(fresh_roots)
        want, have = generated_files(fresh_roots), generated_files(GENERATED_PACKAGES)
        stale = sorted(set(want) ^ set(have))
        stale += sorted(f for f in set(want) & set(have) if not filecmp.cmp(want[f], have[f], shallow=False))
    if stale:
        print("generated code is stale; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print(f"generated code is up to date ({len(want)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    if parser.parse_args().check:
        return check()
    for stale in generated_files(GENERATED_PACKAGES).values():
        stale.unlink()
    generate(GENERATED_PACKAGES)
    print(f"wrote {len(generated_files(GENERATED_PACKAGES))} files under client/, server/ and bench/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
