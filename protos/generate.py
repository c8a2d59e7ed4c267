"""Write the Python code generated from protos/ into client/cairn/ (the only place it lives).

Proto paths match import paths (`-I protos`), so `cairn/v1/state.proto` becomes the module
`cairn.v1.state_pb2` with no import rewriting. `--check` regenerates into a temporary
directory and fails when the committed files differ, so CI catches stale code.
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
OUT_ROOT = ROOT / "client"
GENERATED_PACKAGES = ("cairn/v1", "cairn/internal")
INIT_TEXT = '"""Generated from protos/ by protos/generate.py; do not edit."""\n'


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in GENERATED_PACKAGES:
        (out / package / "__init__.py").write_text(INIT_TEXT)


def generated_files(root: Path) -> set[str]:
    files: set[str] = set()
    for package in GENERATED_PACKAGES:
        for path in (root / package).glob("*"):
            if path.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")) or path.name == "__init__.py":
                files.add(str(path.relative_to(root)))
    return files


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = generated_files(fresh), generated_files(OUT_ROOT)
        stale = sorted(want ^ have)
        stale += sorted(f for f in want & have if not filecmp.cmp(fresh / f, OUT_ROOT / f, shallow=False))
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
    for package in GENERATED_PACKAGES:
        for stale in generated_files(OUT_ROOT):
            if stale.startswith(package):
                (OUT_ROOT / stale).unlink()
    generate(OUT_ROOT)
    print(f"wrote {len(generated_files(OUT_ROOT))} files under {OUT_ROOT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
