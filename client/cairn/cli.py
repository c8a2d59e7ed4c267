"""`cairn`: the operator's command line (state, checkpoints, recover, sync, validate, status, workflow runs,
workers, cluster, bench)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from .cli_common import (  # noqa: F401 (ENDPOINTS_ENV and the *_ENV names are part of this module's API)
    CA_ENV,
    CERT_ENV,
    ENDPOINTS_ENV,
    KEY_ENV,
    TOKEN_ENV,
    _client,
    _common,
    _emit,
    _jsonable,
    _security,
    _security_options,
    console,
)
from .cli_security import audit, auth
from .client import RUN_STATUSES, Client
from .errors import CairnError


def _state_table(s: Any) -> None:
    table = Table(title=f"workflow {s.workflow_id}", show_header=False)
    table.add_row("version", str(s.version))
    table.add_row("current_step", s.current_step)
    table.add_row("variables", json.dumps(s.variables, sort_keys=True))
    table.add_row("labels", json.dumps(s.metadata.labels, sort_keys=True))
    table.add_row("checksum", s.metadata.checksum)
    table.add_row("created / updated", f"{s.metadata.created_at} / {s.metadata.updated_at}")
    if s.checkpoint:
        table.add_row("latest checkpoint", f"{s.checkpoint.id} (version {s.checkpoint.version})")
    table.add_row("served by", f"{s.served_by} at index {s.applied_index}")
    console.print(table)
    if s.history:
        hist = Table(title="history")
        for col in ("version", "kind", "step", "changed keys", "time", "request id"):
            hist.add_column(col)
        for h in s.history:
            hist.add_row(
                str(h.version),
                h.kind + (f" {h.checkpoint_id}" if h.checkpoint_id else ""),
                h.step,
                ",".join(h.changed_keys),
                str(h.time),
                h.request_id,
            )
        console.print(hist)


def _checkpoint_table(cps: list) -> None:
    table = Table(title="checkpoints")
    for col in ("id", "version", "timestamp", "checksum"):
        table.add_column(col)
    for cp in cps:
        table.add_row(cp.id, str(cp.version), str(cp.timestamp), cp.checksum)
    console.print(table)


@click.group()
@click.version_option(package_name="cairn")
def main() -> None:
    """Cairn: a replicated workflow-state engine."""


# ---- state ---------------------------------------------------------------------------------------


@main.group()
def state() -> None:
    """Read and write workflow state."""


@state.command("put")
@click.argument("workflow_id")
@click.option("--step", default="", help="the workflow's current step")
@click.option("--vars", "variables", default=None, help="variables as a JSON object")
@click.option("--vars-file", type=click.File("r"), default=None, help="variables from a JSON file (- for stdin)")
@click.option("--label", "labels", multiple=True, help="key=value (repeatable)")
@click.option("--expected-version", type=int, default=None, help="compare-and-swap; 0 = create only")
@click.option("--request-id", default=None, help="idempotency key (one is made if omitted)")
@_common
def state_put(
    workflow_id: str,
    step: str,
    variables: str | None,
    vars_file: Any,
    labels: tuple[str, ...],
    expected_version: int | None,
    request_id: str | None,
    **_: Any,
) -> None:
    """Write a new version of WORKFLOW_ID's state."""
    ctx = click.get_current_context()
    try:
        parsed = json.load(vars_file) if vars_file else (json.loads(variables) if variables else {})
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--vars") from None
    label_map = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--label")
        label_map[key] = value
    with _client(ctx) as c:
        result = c.persist_state(
            workflow_id,
            current_step=step,
            variables=parsed,
            labels=label_map,
            expected_version=expected_version,
            request_id=request_id,
        )
    _emit(ctx, result, _state_table)


@state.command("get")
@click.argument("workflow_id")
@click.option("--serializable", is_flag=True, help="read the answering node's replica without a read barrier")
@click.option("--history/--no-history", default=True, show_default=True)
@_common
def state_get(workflow_id: str, serializable: bool, history: bool, **_: Any) -> None:
    """Show WORKFLOW_ID's current state (linearizable by default)."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.get_state(
            workflow_id, consistency="serializable" if serializable else "linearizable", include_history=history
        )
    _emit(ctx, result, _state_table)


@state.command("list")
@click.option("--prefix", default="", help="only ids starting with this")
@click.option("--limit", type=int, default=100, show_default=True)
@_common
def state_list(prefix: str, limit: int, **_: Any) -> None:
    """List workflows in id order."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.list_workflows(prefix, limit=limit)

    def render(items: list) -> None:
        table = Table(title=f"{len(items)} workflows")
        for col in ("workflow id", "version", "step", "updated"):
            table.add_column(col)
        for w in items:
            table.add_row(w.workflow_id, str(w.version), w.current_step, str(w.updated_at))
        console.print(table)

    _emit(ctx, result, render)


@state.command("delete")
@click.argument("workflow_id")
@click.option("--expected-version", type=int, default=None)
@_common
def state_delete(workflow_id: str, expected_version: int | None, **_: Any) -> None:
    """Delete WORKFLOW_ID with its history and checkpoints."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.delete_workflow(workflow_id, expected_version=expected_version)
    _emit(
        ctx,
        result,
        lambda r: console.print(
            f"deleted {r.workflow_id} at version {r.deleted_version} ({r.deleted_checkpoints} checkpoints)"
        ),
    )


# ---- checkpoints, recover, sync, validate --------------------------------------------------------


@main.group()
def checkpoint() -> None:
    """Create and inspect checkpoints."""


@checkpoint.command("create")
@click.argument("workflow_id")
@_common
def checkpoint_create(workflow_id: str, **_: Any) -> None:
    """Capture WORKFLOW_ID's whole state with a checksum."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.create_checkpoint(workflow_id)
    _emit(ctx, result, lambda cp: _checkpoint_table([cp]))


@checkpoint.command("list")
@click.argument("workflow_id")
@_common
def checkpoint_list(workflow_id: str, **_: Any) -> None:
    """List WORKFLOW_ID's checkpoints, oldest first."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.list_checkpoints(workflow_id)
    _emit(ctx, result, _checkpoint_table)


@checkpoint.command("get")
@click.argument("workflow_id")
@click.argument("checkpoint_id")
@_common
def checkpoint_get(workflow_id: str, checkpoint_id: str, **_: Any) -> None:
    """Show one checkpoint with its captured state."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.get_checkpoint(workflow_id, checkpoint_id)

    def render(cp: Any) -> None:
        _checkpoint_table([cp])
        if cp.state:
            _state_table(cp.state)

    _emit(ctx, result, render)


@main.command()
@click.argument("workflow_id")
@click.argument("checkpoint_id")
@click.option("--expected-version", type=int, default=None)
@_common
def recover(workflow_id: str, checkpoint_id: str, expected_version: int | None, **_: Any) -> None:
    """Restore WORKFLOW_ID to CHECKPOINT_ID's state, as a new version."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.recover_from_checkpoint(workflow_id, checkpoint_id, expected_version=expected_version)
    _emit(ctx, result, _state_table)


@main.command()
@click.argument("workflow_id")
@_common
def sync(workflow_id: str, **_: Any) -> None:
    """Bring the answering node up to the leader's commit index."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.synchronize_state(workflow_id)
    _emit(
        ctx,
        result,
        lambda r: console.print(
            f"{r.node_id} (leader {r.leader_id}) applied {r.applied_index_before} -> {r.applied_index_after}, "
            f"leader commit {r.leader_commit_index}; {r.workflow_id} at version {r.version}; {r.duration_ms:.1f} ms"
        ),
    )


@main.command()
@click.argument("workflow_id")
@_common
def validate(workflow_id: str, **_: Any) -> None:
    """Check checksums, history, checkpoints and replica agreement; exit 1 on any problem."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.validate_state(workflow_id)

    def render(r: Any) -> None:
        verdict = "[green]valid[/green]" if r.valid else f"[red]{len(r.problems)} problem(s)[/red]"
        console.print(
            f"{r.workflow_id} version {r.version}: {verdict} "
            f"({r.history_entries_checked} history entries, {r.checkpoints_checked} checkpoints)"
        )
        for p in r.problems:
            console.print(f"  {p.code} on {p.node_id}: {p.message}", highlight=False)
        table = Table(title="replicas")
        for col in ("node", "reachable", "applied index", "version", "digest"):
            table.add_column(col)
        for d in r.replicas:
            table.add_row(
                d.node_id,
                "yes" if d.reachable else f"no ({d.error})",
                str(d.applied_index),
                str(d.version),
                d.digest[:16],
            )
        console.print(table)

    _emit(ctx, result, render)
    if not result.valid:
        sys.exit(1)


@main.command()
@_common
def status(**_: Any) -> None:
    """Each node's role, leader, term, commit and applied index, members and health."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.cluster_status()

    def render(r: Any) -> None:
        table = Table(title="cluster status")
        for col in (
            "endpoint",
            "node",
            "role",
            "leader",
            "term",
            "commit",
            "applied",
            "log",
            "snapshot",
            "members connected",
            "health",
        ):
            table.add_column(col)
        for n in r.nodes:
            connected = sum(1 for m in n.members if m.connected)
            table.add_row(
                n.endpoint,
                n.node_id,
                n.role,
                n.leader_id,
                str(n.term),
                str(n.commit_index),
                str(n.applied_index),
                str(n.log_entries),
                str(n.snapshot_index),
                f"{connected}/{len(n.members)}",
                "ok" if n.healthy else n.error[:60],
            )
        console.print(table)

    _emit(ctx, result, render)
    if not result.healthy:
        sys.exit(1)


# ---- workers -------------------------------------------------------------------------------------


def load_workflows(module_or_file: str) -> list[Any]:
    """Import a module (dotted name, from the current directory too) or a .py file; its @cairn.workflow types."""
    import importlib
    import importlib.util
    from pathlib import Path

    from .worker import workflows_in

    path = Path(module_or_file)
    if module_or_file.endswith(".py") or path.is_file():
        if not path.is_file():
            raise click.BadParameter(f"{module_or_file}: no such file", param_hint="MODULE_OR_FILE")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise click.BadParameter(f"{module_or_file}: cannot be imported", param_hint="MODULE_OR_FILE")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        sys.path.insert(0, str(path.resolve().parent))
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_or_file)
        except ImportError as exc:
            raise click.BadParameter(f"{module_or_file}: {exc}", param_hint="MODULE_OR_FILE") from None
    found = workflows_in(vars(module).values())
    if not found:
        raise click.BadParameter(f"{module_or_file} defines no @cairn.workflow", param_hint="MODULE_OR_FILE")
    return found


@main.group()
def worker() -> None:
    """Run workflow workers."""


@worker.command("run")
@click.argument("module_or_file")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=4, show_default=True, help="runs at once")
@click.option(
    "--lease-timeout", default="10s", show_default=True, help="lease duration, e.g. 10s (within the cluster's bounds)"
)
@click.option("--worker-id", default=None, help="shown as the runs' lease holder (default: host-pid-random)")
@click.option("--poll-wait", type=float, default=10.0, show_default=True, help="seconds one long poll is held")
@click.option("--log-level", default="INFO", show_default=True)
@_common
def worker_run(
    module_or_file: str,
    concurrency: int,
    lease_timeout: str,
    worker_id: str | None,
    poll_wait: float,
    log_level: str,
    **_: Any,
) -> None:
    """Import MODULE_OR_FILE and serve every @cairn.workflow in it until SIGTERM/SIGINT."""
    import logging

    from .durations import parse_duration
    from .worker import Worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        lease = parse_duration(lease_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lease-timeout") from None
    ctx = click.get_current_context()
    definitions = load_workflows(module_or_file)
    runner = Worker(
        _client(ctx),
        definitions,
        concurrency=concurrency,
        lease_timeout=lease,
        worker_id=worker_id,
        poll_wait=poll_wait,
    )
    if not ctx.obj["json"]:
        console.print(
            f"worker {runner.worker_id} serving {', '.join(sorted(runner.workflows))} "
            f"(concurrency {concurrency}, lease {lease}s); Ctrl-C stops it",
            highlight=False,
        )
    runner.run()
    summary = {
        "worker_id": runner.worker_id,
        "completed": runner.completed,
        "failed": runner.failed,
        "dropped": runner.dropped,
    }
    _emit(
        ctx,
        summary,
        lambda s: console.print(
            f"stopped: {s['completed']} completed, {s['failed']} failed attempts, {s['dropped']} dropped (lease lost)",
            highlight=False,
        ),
    )


# ---- workflow runs -------------------------------------------------------------------------------

_STATUS_STYLE = {
    "PENDING": "yellow",
    "RUNNING": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "QUARANTINED": "red",
    "CANCELLED": "magenta",
}


def _status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _json_text(value: Any) -> Text:
    """A JSON value as a table cell; Text, so brackets in user data are never read as rich markup."""
    return Text(json.dumps(value, sort_keys=True))


def _parse_json_input(text: str, hint: str) -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=hint) from None


def _parse_labels(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--label")
        out[key] = value
    return out


def _run_table(run: Any) -> None:
    table = Table(title=f"workflow run {run.workflow_id}", show_header=False)
    table.add_row("status", _status_text(run.status))
    table.add_row("attempt", str(run.attempt))
    table.add_row("type", Text(run.workflow_type))
    table.add_row("current step", Text(run.current_step or "-"))
    holder = run.lease_holder or (run.lease.worker_id if run.lease else "")
    table.add_row("lease holder", Text(holder or "-"))
    if run.lease is not None:
        table.add_row("lease expires", f"{run.lease.expires_at} (fencing token {run.lease.fencing_token})")
    table.add_row("input", _json_text(run.input))
    table.add_row("output", _json_text(run.output))
    table.add_row("last error", Text(run.last_error or "-"))
    table.add_row("version", str(run.version))
    table.add_row("started / finished", f"{run.started_at or '-'} / {run.finished_at or '-'}")
    if run.status == "PENDING" and run.ready_at:
        table.add_row("ready at", str(run.ready_at))
    if run.metadata.labels:
        table.add_row("labels", _json_text(run.metadata.labels))
    console.print(table)
    if run.steps:
        steps = Table(title="steps")
        for col in ("name", "result", "attempt", "completed at"):
            steps.add_column(col)
        for s in run.steps:
            steps.add_row(Text(s.name), _json_text(s.result), str(s.attempt), str(s.completed_at))
        console.print(steps)


@main.group()
def workflow() -> None:
    """Start, inspect, wait for, cancel and release workflow runs."""


@workflow.command("start")
@click.argument("workflow_type")
@click.argument("workflow_id")
@click.option("--input", "input_text", default=None, metavar="JSON", help="the run's input, any JSON value")
@click.option("--input-file", type=click.File("r"), default=None, help="the input from a JSON file (- for stdin)")
@click.option("--label", "labels", multiple=True, help="key=value (repeatable)")
@click.option("--request-id", default=None, help="idempotency key: a retry with it returns the first result")
@_common
def workflow_start(
    workflow_type: str,
    workflow_id: str,
    input_text: str | None,
    input_file: Any,
    labels: tuple[str, ...],
    request_id: str | None,
    **_: Any,
) -> None:
    """Start WORKFLOW_ID as a run of WORKFLOW_TYPE (PENDING until a worker claims it)."""
    ctx = click.get_current_context()
    if input_text is not None and input_file is not None:
        raise click.UsageError("give --input or --input-file, not both")
    value = None
    if input_text is not None:
        value = _parse_json_input(input_text, "--input")
    elif input_file is not None:
        value = _parse_json_input(input_file.read(), "--input-file")
    label_map = _parse_labels(labels)
    with _client(ctx) as c:
        result = c.start_workflow(workflow_type, workflow_id, value, labels=label_map, request_id=request_id)
    _emit(ctx, result, _run_table)


@workflow.command("list")
@click.option(
    "--status",
    type=click.Choice(RUN_STATUSES, case_sensitive=False),
    default=None,
    metavar=f"[{'|'.join(RUN_STATUSES)}]",
    help="only runs in this status (any case)",
)
@click.option("--type", "workflow_type", default=None, help="only runs of this workflow type")
@click.option("--prefix", default="", help="only ids starting with this")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@_common
def workflow_list(status: str | None, workflow_type: str | None, prefix: str, limit: int, **_: Any) -> None:
    """List workflow runs in id order."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.list_workflow_runs(
            status=status.upper() if status else None, workflow_type=workflow_type, prefix=prefix, limit=limit
        )

    def render(items: list) -> None:
        table = Table(title=f"{len(items)} runs")
        for col in ("workflow id", "type", "status", "attempt", "step", "version", "updated"):
            table.add_column(col)
        for r in items:
            table.add_row(
                Text(r.workflow_id),
                Text(r.workflow_type),
                _status_text(r.status),
                str(r.attempt),
                Text(r.current_step),
                str(r.version),
                str(r.updated_at),
            )
        console.print(table)

    _emit(ctx, result, render)


@workflow.command("show")
@click.argument("workflow_id")
@_common
def workflow_show(workflow_id: str, **_: Any) -> None:
    """Show WORKFLOW_ID's run: status, attempt, lease, input, output, error and recorded steps."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.get_workflow(workflow_id)
    _emit(ctx, result, _run_table)


@workflow.command("wait")
@click.argument("workflow_id")
@_common(timeout_default=60.0, timeout_help="seconds to wait for the run to end")
def workflow_wait(workflow_id: str, timeout: float, **_: Any) -> None:
    """Wait until WORKFLOW_ID ends; exit 0 only if it COMPLETED (1 if FAILED, QUARANTINED, CANCELLED or timed out)."""
    import time

    ctx = click.get_current_context()
    deadline = time.monotonic() + timeout
    delay = 0.05
    with _client(ctx) as c:
        while True:
            # Each read gets what is left (at least a moment), so the last status seen is the one reported.
            run = c.get_workflow(workflow_id, timeout=max(0.5, deadline - time.monotonic()))
            left = deadline - time.monotonic()
            if run.done or left <= 0:
                break
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.5)

    def render(r: Any) -> None:
        if not r.done:
            console.print(
                f"{r.workflow_id} is still {r.status} after {timeout:g}s "
                f"(attempt {r.attempt}, step {r.current_step or '-'})",
                highlight=False,
            )
            return
        style = _STATUS_STYLE.get(r.status, "")
        console.print(Text.assemble((r.workflow_id, ""), " ", (r.status, style), f" (attempt {r.attempt})"))
        if r.status == "COMPLETED":
            console.print(Text(f"output: {json.dumps(r.output, sort_keys=True)}"))
        elif r.last_error:
            console.print(Text(f"last error: {r.last_error}"))

    _emit(ctx, run, render)
    if run.status != "COMPLETED":
        sys.exit(1)


@workflow.command("cancel")
@click.argument("workflow_id")
@click.option("--reason", default="", help="recorded as the run's last error")
@_common
def workflow_cancel(workflow_id: str, reason: str, **_: Any) -> None:
    """Cancel WORKFLOW_ID (PENDING, RUNNING or QUARANTINED -> CANCELLED); its worker stops at its next write."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.cancel_workflow(workflow_id, reason=reason)
    _emit(ctx, result, _run_table)


@workflow.command("release")
@click.argument("workflow_id")
@_common
def workflow_release(workflow_id: str, **_: Any) -> None:
    """Release a QUARANTINED WORKFLOW_ID: PENDING again, with a fresh recovery.max_attempts budget."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        result = c.release_workflow(workflow_id)
    _emit(ctx, result, _run_table)


# ---- encryption at rest ---------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Encryption at rest (state_storage.encryption): rotate data keys, see each node's keys and pass."""


def _key_statuses(c: Client, timeout: float) -> list[Any]:
    from .types import KeyStatus

    out = []
    for endpoint in c.endpoints:
        try:
            out.append(c.key_status(endpoint, timeout=timeout))
        except CairnError as err:
            out.append(KeyStatus.unreachable(endpoint, f"{err.code}: {err.message}"))
    return out


def _rate(n: Any) -> str:
    if n.elapsed_seconds <= 0:
        return "-"
    return f"{n.records_per_second:,.0f} rec/s, {n.bytes_per_second / 1e6:.1f} MB/s"


def _key_table(statuses: list[Any]) -> None:
    table = Table(title="encryption at rest")
    for col in ("endpoint", "node", "current key", "KEK", "records per key", "old records", "pass", "rate", "error"):
        table.add_column(col)
    for n in statuses:
        if not n.node_id:
            table.add_row(n.endpoint, "", "", "", "", "", "", "", n.error[:80])
            continue
        if n.pass_running:
            state = f"running ({n.rewritten_records:,} rewritten)"
        else:
            state = "complete" if n.pass_complete else "owed"
        table.add_row(
            n.endpoint,
            n.node_id,
            str(n.current_key_id),
            n.kek_fingerprint,
            ", ".join(f"{k.key_id}: {k.records:,}" for k in n.keys),
            f"{n.old_records:,}",
            state,
            _rate(n),
            n.error[:80],
        )
    console.print(table)


@keys.command("rotate")
@click.option("--wait", is_flag=True, help="follow every node's re-encryption pass until it completes")
@click.option("--wait-timeout", type=float, default=3600.0, show_default=True, help="seconds --wait waits at most")
@_common
def keys_rotate(wait: bool, wait_timeout: float, **_: Any) -> None:
    """A new data key on every node for new writes; older records stay readable and are re-encrypted in the
    background (`cairn keys status`, or --wait)."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    ctx = click.get_current_context()
    with _client(ctx) as c:
        rotated = c.rotate_keys()
        result: dict[str, Any] = {"rotation_index": rotated.rotation_index, "leader_key_id": rotated.leader_key_id}
        if not ctx.obj["json"]:
            console.print(
                f"rotated at Raft index {rotated.rotation_index}: the leader's current data key is "
                f"{rotated.leader_key_id}; every node re-encrypts its older records in the background"
            )
        if wait:
            deadline = time.monotonic() + wait_timeout

            def done(statuses: list[Any]) -> bool:
                return all(
                    n.node_id and n.pass_complete and not n.pass_running and n.old_records == 0 for n in statuses
                )

            statuses = _key_statuses(c, ctx.obj["timeout"])
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} records"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=console,
                disable=ctx.obj["json"],
            ) as progress:
                tasks = {n.endpoint: progress.add_task(n.node_id or n.endpoint, total=1, rate="") for n in statuses}
                while True:
                    for n in statuses:
                        total = max(n.rewritten_records + n.old_records, 1)
                        progress.update(
                            tasks[n.endpoint],
                            description=n.node_id or f"{n.endpoint} ({n.error[:40]})",
                            completed=total - n.old_records if n.node_id else 0,
                            total=total,
                            rate=_rate(n) if n.node_id else "",
                        )
                    if done(statuses) or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                    statuses = _key_statuses(c, ctx.obj["timeout"])
            result["nodes"] = statuses
            if ctx.obj["json"]:
                _emit(ctx, result, lambda _r: None)
            else:
                _key_table(statuses)
            if not done(statuses):
                console.print("[red]the re-encryption did not complete on every node in time[/red]")
                sys.exit(1)
        elif ctx.obj["json"]:
            _emit(ctx, result, lambda _r: None)


@keys.command("status")
@_common
def keys_status(**_: Any) -> None:
    """Each node's current data key, records per key id, records left on older keys, and its pass."""
    ctx = click.get_current_context()
    with _client(ctx) as c:
        statuses = _key_statuses(c, ctx.obj["timeout"])
    _emit(ctx, statuses, _key_table)
    if any(not n.node_id for n in statuses):
        sys.exit(1)


@keys.command("bench")
@click.option("--records", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--value-bytes", type=click.IntRange(0), default=256, show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def keys_bench(records: int, value_bytes: int, repeat: int, as_json: bool) -> None:
    """Re-encryption throughput on a scratch RocksDB (no cluster): write RECORDS, rotate, time the pass."""
    from cairn_server.rekey import bench_reencryption

    runs = [bench_reencryption(records, value_bytes) for _ in range(repeat)]
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    table = Table(title=f"re-encryption pass: {records:,} records of {value_bytes} bytes")
    for col in ("run", "seconds", "records/s", "MB/s"):
        table.add_column(col)
    for i, r in enumerate(runs, 1):
        table.add_row(str(i), f"{r['seconds']:.2f}", f"{r['records_per_second']:,.0f}", f"{r['mb_per_second']:.1f}")
    rates = [r["records_per_second"] for r in runs]
    table.add_row("spread", "", f"{min(rates):,.0f} - {max(rates):,.0f}", "")
    console.print(table)


# ---- running nodes -------------------------------------------------------------------------------


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--insecure", is_flag=True, help="allow a multi-node cluster without a cluster secret (unsafe)")
@click.option("--log-level", default="INFO", show_default=True)
def node(config_path: str, insecure: bool, log_level: str) -> None:
    """Run one node from a YAML configuration file."""
    from cairn_server.__main__ import main as node_main

    args = ["--config", config_path, "--log-level", log_level] + (["--insecure"] if insecure else [])
    sys.exit(node_main(args))


@main.group()
def cluster() -> None:
    """Run a local cluster."""


# Set per node by `cluster up` itself: one value for every node would break the cluster.
_PER_NODE_KEYS = (
    "cluster.node_id",
    "cluster.grpc_address",
    "cluster.advertise_grpc_address",
    "cluster.raft_address",
    "cluster.peers",
    "state_storage.connection",
)


def _parse_set(_ctx: click.Context, _param: click.Parameter, pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--set a.b=VALUE ...` -> {"a": {"b": VALUE}}, VALUE read as YAML (`2s` a string, `3` an int)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise click.BadParameter(f"expected KEY=VALUE with a dotted KEY (checkpointing.interval=2s), got {pair!r}")
        parts = [p.strip() for p in parts]
        dotted = ".".join(parts)
        if any(dotted == k or k.startswith(dotted + ".") or dotted.startswith(k + ".") for k in _PER_NODE_KEYS):
            raise click.BadParameter(f"{dotted} is set per node by `cluster up` and cannot be overridden")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{dotted}: the value is not valid YAML: {exc}") from None
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{dotted} conflicts with --set {'.'.join(parts[: i + 1])}")
        if parts[-1] in node:
            raise click.BadParameter(f"{dotted} is set twice or conflicts with another --set")
        node[parts[-1]] = value
    return out


@cluster.command("up")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option("--data-dir", default="./data", show_default=True)
@click.option("--base-port", type=click.IntRange(1024, 65000), default=50051, show_default=True)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_set,
    help="override a node config key for every node, e.g. --set checkpointing.interval=2s (repeatable)",
)
@click.option(
    "--secure",
    is_flag=True,
    help="mTLS only, access control and encryption at rest; a CA, certificates and a key are made once under "
    "DATA_DIR/tls and reused",
)
def cluster_up(nodes: int, data_dir: str, base_port: int, overrides: dict[str, Any], secure: bool) -> None:
    """Start NODES node processes on 127.0.0.1 (gRPC on base-port, base-port+1, ...) until Ctrl-C."""
    from cairn_server.local_cluster import run_cluster_up

    sys.exit(run_cluster_up(nodes, data_dir, base_port, echo=click.echo, overrides=overrides, secure=secure))


@main.command()
@click.option(
    "--endpoints",
    envvar=ENDPOINTS_ENV,
    default=None,
    help="target a running cluster (default: start a fresh local 3-node cluster)",
)
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option(
    "--ops",
    default="persist,cas,get,checkpoint,recover,sync",
    show_default=True,
    help="which operations to measure; `workflow`: completed 3-step workflows/s with max(2, --concurrency) "
    "worker processes, and recovery time after worker kills",
)
@click.option("--concurrency", type=click.IntRange(1, 1024), default=1, show_default=True)
@click.option("--value-size", type=click.IntRange(0, 4 * 1024 * 1024), default=1024, show_default=True)
@click.option("--duration", type=float, default=5.0, show_default=True, help="seconds per operation")
@click.option("--workflows", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--durability", type=click.Choice(["fsync", "process"]), default="fsync", show_default=True)
@click.option("--kills", type=click.IntRange(0, 1000), default=10, show_default=True, help="workflow: worker kills")
@click.option(
    "--worker-slots", type=click.IntRange(1, 1024), default=8, show_default=True, help="workflow: runs per worker"
)
@click.option("--json", "as_json", is_flag=True)
@_security_options
def bench(
    endpoints: str | None,
    nodes: int,
    ops: str,
    concurrency: int,
    value_size: int,
    duration: float,
    workflows: int,
    durability: str,
    kills: int,
    worker_slots: int,
    as_json: bool,
    ca: str | None,
    cert: str | None,
    key: str | None,
    token: str | None,
) -> None:
    """Measure ops/s and latency percentiles against a cluster."""
    from .bench import run_bench

    security = _security(ca, cert, key, token)
    if security and endpoints is None:
        raise click.UsageError("--ca/--cert/--key/--token are for a cluster given with --endpoints")

    results = run_bench(
        endpoints=endpoints,
        nodes=nodes,
        ops=[o.strip() for o in ops.split(",") if o.strip()],
        concurrency=concurrency,
        value_size=value_size,
        duration=duration,
        workflows=workflows,
        durability=durability,
        echo=(lambda *_: None) if as_json else console.print,
        kills=kills,
        worker_slots=worker_slots,
        security=security,
    )
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        return
    table = Table(title=f"cairn bench: concurrency {concurrency}, {value_size} B values, {durability}")
    for col in ("op", "ops", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r.op,
            str(r.count),
            str(r.errors),
            f"{r.ops_per_sec:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p90_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.max_ms:.2f}",
        )
    console.print(table)

main.add_command(auth)
main.add_command(audit)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
