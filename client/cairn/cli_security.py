"""`cairn auth ...` (roles, bindings, tokens) and `cairn audit ...` (tail, export, verify).

Registered on the main command group by cli.py; the shared options come from cli_common.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .admin import OPERATIONS, AuditRecord, Grant
from .cli_common import _client, _common, _emit, _jsonable, console


@click.group()
def auth() -> None:
    """Access control: roles (operations on workflow-id prefixes), bindings and bearer tokens."""


@auth.group("role")
def role() -> None:
    """Create, list and delete roles."""


@role.command("put")
@click.argument("name")
@click.option(
    "--grant",
    "grants",
    multiple=True,
    required=True,
    help=f"OPS[:NAMESPACE], e.g. read,write:billing/ (repeatable; OPS from {', '.join(OPERATIONS)}; "
    "no namespace = every workflow)",
)
@_common
def role_put(name: str, grants: tuple[str, ...], **_: Any) -> None:
    """Create or replace the role NAME."""
    ctx = click.get_current_context()
    try:
        parsed = [Grant.parse(g) for g in grants]
        for g in parsed:
            g.to_proto()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grant") from None
    with _client(ctx) as c:
        result = c.put_role(name, parsed)
    _emit(ctx, result, lambda r: console.print(f"role {r.name}: " + "; ".join(_grant_text(g) for g in r.grants)))


def _grant_text(g: Grant) -> str:
    return f"{','.join(g.operations)} on {g.namespace or '*'}"


@role.command("list")
@_common
def role_list(**_: Any) -> None:
    ctx = click.get_current_context()
    with _client(ctx) as c:
        roles = c.list_roles()

    def render(items: list) -> None:
        table = Table(title="roles")
        table.add_column("role")
        table.add_column("grants")
        for r in items:
            table.add_row(r.name, "; ".join(_grant_text(g) for g in r.grants))
        console.print(table)

    _emit(ctx, roles, render)


@role.command("delete")
@click.argument("name")
@_common
def role_delete(name: str, **_: Any) -> None:
    ctx = click.get_current_context()
    with _client(ctx) as c:
        c.delete_role(name)
    _emit(ctx, {"deleted": name}, lambda _r: console.print(f"role {name} deleted"))


@auth.command("bind")
@click.argument("identity")
@click.argument("role_name", metavar="ROLE")
@click.option("--remove", is_flag=True, help="take the role away instead")
@_common
def bind(identity: str, role_name: str, remove: bool, **_: Any) -> None:
    """Give IDENTITY (a certificate name or a token's identity) the role ROLE (or take it away with --remove)."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        roles = c.unbind(identity, role_name) if remove else c.bind(identity, role_name)
    text = f"{identity}: {', '.join(roles) or '-'}"
    _emit(ctx, {"identity": identity, "roles": roles}, lambda _r: console.print(text))


@auth.command("bindings")
@_common
def bindings(**_: Any) -> None:
    """Every identity and its roles."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.list_bindings()

    def render(items: dict) -> None:
        table = Table(title="bindings")
        table.add_column("identity")
        table.add_column("roles")
        for identity, roles in items.items():
            table.add_row(identity, ", ".join(roles))
        console.print(table)

    _emit(ctx, result, render)


@auth.group("token")
def token() -> None:
    """Bearer tokens for clients that cannot use client certificates."""


@token.command("create")
@click.argument("identity")
@click.option("--ttl", "ttl_seconds", type=click.IntRange(0, 10 * 365 * 86400), default=0, help="seconds; 0 = never")
@_common
def token_create(identity: str, ttl_seconds: int, **_: Any) -> None:
    """A new token for IDENTITY, printed once (the cluster keeps only a salted hash)."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        text, info = c.create_token(identity, ttl_seconds=ttl_seconds)
    _emit(ctx, {"token": text, "info": info}, lambda _r: click.echo(text))


@token.command("list")
@_common
def token_list(**_: Any) -> None:
    ctx = click.get_current_context()
    with _client(ctx) as c:
        tokens = c.list_tokens()

    def render(items: list) -> None:
        table = Table(title="tokens")
        for col in ("id", "identity", "created", "expires"):
            table.add_column(col)
        for t in items:
            table.add_row(t.token_id, t.identity, str(t.created_at), str(t.expires_at or "never"))
        console.print(table)

    _emit(ctx, tokens, render)


@token.command("revoke")
@click.argument("token_id")
@_common
def token_revoke(token_id: str, **_: Any) -> None:
    ctx = click.get_current_context()
    with _client(ctx) as c:
        c.revoke_token(token_id)
    _emit(ctx, {"revoked": token_id}, lambda _r: console.print(f"token {token_id} revoked"))


@auth.command("whoami")
@_common
def whoami(**_: Any) -> None:
    """Who the cluster takes you for, and what you may do."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        me = c.whoami()
    _emit(
        ctx,
        me,
        lambda r: console.print(
            f"{r.identity or '(nobody)'} via {r.source}; auth {'on' if r.auth_enabled else 'off'}; "
            + ("; ".join(_grant_text(g) for g in r.grants) or "no grants")
        ),
    )


# ---- audit ---------------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """The tamper-evident audit log: every write and admin action, hash-chained, on every replica."""


def _record_table(records: list[AuditRecord]) -> None:
    table = Table(title="audit")
    for col in ("seq", "time", "identity", "operation", "workflow", "request", "code", "hash"):
        table.add_column(col)
    for r in records:
        table.add_row(
            str(r.seq), str(r.time), r.identity, r.operation, r.workflow_id, r.request_id, str(r.code), r.hash[:12]
        )
    console.print(table)


@audit.command("tail")
@click.option("-n", "--lines", type=click.IntRange(1, 1000), default=20, show_default=True)
@_common
def audit_tail(lines: int, **_: Any) -> None:
    """The newest records."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        records = c.audit_records(limit=lines, tail=True)
    _emit(ctx, records, _record_table)


@audit.command("export")
@click.option("--after-seq", type=click.IntRange(0), default=0, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-", help="file (- = stdout)")
@_common
def audit_export(after_seq: int, output: str, **_: Any) -> None:
    """Every record after --after-seq as JSON lines, from the first endpoint."""
    ctx = click.get_current_context()
    out = sys.stdout if output == "-" else open(output, "w")  # noqa: SIM115 (closed below)
    count = 0
    try:
        with _client(ctx) as c:
            for record in c.audit_export(after_seq=after_seq):
                out.write(json.dumps(_jsonable(record), sort_keys=True) + "\n")
                count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if output != "-":
        console.print(f"{count} records written to {output}")


@audit.command("verify")
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="check a stopped node's data directory (state_storage.connection) instead of the live cluster",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="with --data-dir of an encrypted node: its key-encryption key (default: env CAIRN_ENCRYPTION_KEY)",
)
@_common
def audit_verify(data_dir: str | None, key_file: str | None, **_: Any) -> None:
    """Check the chain: online, every endpoint's replica and that they agree; offline, one node's data."""
    ctx = click.get_current_context()
    if data_dir is not None:
        from cairn_server.audit.offline import verify_data_dir

        try:
            result = verify_data_dir(Path(data_dir), key_file)
        except Exception as exc:  # no data there, a wrong or missing key: say which, exit 2
            console.print(f"[red]error[/red] {exc}", highlight=False)
            sys.exit(2)
        _emit(ctx, result, lambda r: console.print(_verdict_text(data_dir, r)))
        if not result["ok"]:
            sys.exit(1)
        return
    with _client(ctx) as c:
        results = c.audit_verify()
        agree = c.audit_heads_agree(results)
    ok = all(r.ok for r in results) and agree["ok"]

    def render(_r: Any) -> None:
        for r in results:
            good = f"{r.checked} records ok, {r.first_seq}..{r.head_seq}"
            text = good if r.ok else f"BROKEN at record {r.broken_seq}: {r.problem}"
            console.print(f"{r.node_id}: {text}")
        console.print(agree["message"])

    _emit(ctx, {"nodes": results, "agree": agree, "ok": ok}, render)
    if not ok:
        sys.exit(1)


def _verdict_text(where: str, r: dict) -> str:
    if r["ok"]:
        return f"{where}: {r['checked']} records ok ({r['first_seq']}..{r['head_seq']})"
    return f"{where}: BROKEN at record {r['broken_seq']}: {r['problem']}"
