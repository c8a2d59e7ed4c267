"""What every `cairn` command that reaches a cluster shares: --endpoints, --json, --timeout, the TLS/auth
options, JSON output and the client they build (cli.py and cli_security.py both use it)."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from rich.console import Console

from .client import DEFAULT_ENDPOINTS, Client
from .errors import CairnError

ENDPOINTS_ENV = "CAIRN_ENDPOINTS"
# TLS and auth for every command that reaches a cluster: --ca/--cert/--key/--token, or these variables.
CA_ENV, CERT_ENV, KEY_ENV, TOKEN_ENV = "CAIRN_CA", "CAIRN_CERT", "CAIRN_KEY", "CAIRN_TOKEN"
# Not a terminal (a pipe, a file, CI): rich would assume 80 columns and cut table cells.
console = Console(width=None if sys.stdout.isatty() else 200)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "raw"}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _emit(ctx: click.Context, value: Any, render: Callable[[Any], None]) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(_jsonable(value), indent=2, sort_keys=True))
    else:
        render(value)


def _client(ctx: click.Context) -> Client:
    return Client(ctx.obj["endpoints"], timeout=ctx.obj["timeout"], **ctx.obj["security"])


def _security_options(f: Callable) -> Callable:
    """--ca, --cert, --key and --token (with CAIRN_CA, CAIRN_CERT, CAIRN_KEY, CAIRN_TOKEN as fallbacks)."""
    pem = click.Path(exists=True, dir_okay=False)
    f = click.option(
        "--token", envvar=TOKEN_ENV, default=None, help=f"bearer token sent with every call (env {TOKEN_ENV})"
    )(f)
    f = click.option("--key", envvar=KEY_ENV, type=pem, default=None, help=f"client private key, PEM (env {KEY_ENV})")(
        f
    )
    f = click.option(
        "--cert", envvar=CERT_ENV, type=pem, default=None, help=f"client certificate for mTLS, PEM (env {CERT_ENV})"
    )(f)
    return click.option(
        "--ca",
        envvar=CA_ENV,
        type=pem,
        default=None,
        help=f"CA certificate to verify the nodes; turns TLS on (env {CA_ENV})",
    )(f)


def _security(ca: str | None, cert: str | None, key: str | None, token: str | None) -> dict[str, Any]:
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together (a client certificate needs its key)")
    out: dict[str, Any] = {k: v for k, v in (("ca", ca), ("cert", cert), ("key", key)) if v is not None}
    if token:
        out["token"] = token
    return out


def _common(
    f: Callable | None = None, *, timeout_default: float = 10.0, timeout_help: str = "overall deadline, seconds"
) -> Callable:
    """--endpoints, --json, --timeout and the TLS/auth options (--ca, --cert, --key, --token) on every command,
    at any position.

    `@_common(timeout_default=..., timeout_help=...)` gives --timeout another meaning and default (`workflow
    wait`: how long to wait); it is still the client's overall deadline."""
    if f is None:
        return functools.partial(_common, timeout_default=timeout_default, timeout_help=timeout_help)
    f = click.option(
        "--endpoints",
        envvar=ENDPOINTS_ENV,
        default=",".join(DEFAULT_ENDPOINTS),
        show_default=True,
        help=f"comma-separated gRPC endpoints (env {ENDPOINTS_ENV})",
    )(f)
    f = click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")(f)
    f = click.option("--timeout", type=float, default=timeout_default, show_default=True, help=timeout_help)(f)
    f = _security_options(f)

    def wrapper(
        endpoints: str,
        as_json: bool,
        timeout: float,
        ca: str | None,
        cert: str | None,
        key: str | None,
        token: str | None,
        **kwargs: Any,
    ) -> None:
        ctx = click.get_current_context()
        ctx.obj = {
            "endpoints": endpoints,
            "json": as_json,
            "timeout": timeout,
            "security": _security(ca, cert, key, token),
        }
        try:
            ctx.invoke(f, endpoints=endpoints, as_json=as_json, timeout=timeout, **kwargs)
        except CairnError as err:
            if as_json:
                click.echo(json.dumps({"error": err.code, "message": err.message}), err=False)
            else:
                console.print(f"[red]error[/red] {err.code}: {err.message}", highlight=False)
            sys.exit(1)

    return functools.wraps(f)(wrapper)
