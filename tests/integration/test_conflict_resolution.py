"""synchronization.conflict_resolution on a real cluster: the mode is stamped by the leader into each write."""

from __future__ import annotations

import pytest

from cairn import FailedPreconditionError


def test_reject_refuses_an_update_without_expected_version(make_cluster) -> None:
    c = make_cluster(3, {"synchronization": {"conflict_resolution": "reject"}}).client
    created = c.persist_state("cr-1", current_step="a", variables={"n": 1})  # creating needs no version
    cp = c.create_checkpoint("cr-1")
    with pytest.raises(FailedPreconditionError, match="conflict_resolution: reject"):
        c.persist_state("cr-1", current_step="b", variables={"n": 2})
    with pytest.raises(FailedPreconditionError, match="expected_version"):
        c.recover_from_checkpoint("cr-1", cp.id)
    after = c.get_state("cr-1")
    assert (after.version, after.checksum) == (created.version, created.checksum)
    assert c.persist_state("cr-1", current_step="b", expected_version=1).version == 2
    assert c.recover_from_checkpoint("cr-1", cp.id, expected_version=2).version == 3


def test_last_write_wins_applies_unconditional_writes_in_log_order(make_cluster) -> None:
    c = make_cluster(3, {"synchronization": {"conflict_resolution": "last_write_wins"}}).client
    c.persist_state("lww-1", current_step="a", variables={"n": 1})
    assert c.persist_state("lww-1", current_step="b", variables={"n": 2}).version == 2
    got = c.get_state("lww-1")
    assert (got.version, got.variables) == (2, {"n": 2})
    assert [h.step for h in got.history] == ["a", "b"]
