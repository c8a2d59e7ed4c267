"""`python -m cairn_server --config FILE [--insecure]`: run one node (same as `cairn node`)."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError, load_config
from .node import run_node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cairn_server", description="Run one Cairn node.")
    parser.add_argument("--config", required=True, help="the node's YAML configuration file")
    parser.add_argument(
        "--insecure", action="store_true", help="allow a multi-node cluster without a cluster secret (unsafe)"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config, insecure=args.insecure)
    except ConfigError as exc:
        print(f"cairn: invalid configuration: {exc}", file=sys.stderr)
        return 2
    return run_node(config)


if __name__ == "__main__":
    raise SystemExit(main())
