"""Wire constants shared by the SDK and the node: the one vocabulary of metadata keys on the gRPC API."""

from __future__ import annotations

# Trailing metadata on an error: the leader's gRPC address, when the answering node knows it.
LEADER_KEY = "x-cairn-leader"
# Trailing metadata on ABORTED (version conflict): the version that is stored.
CURRENT_VERSION_KEY = "x-cairn-current-version"
# Trailing metadata refining an error's code: REASON_LEASE_LOST on a FAILED_PRECONDITION.
REASON_KEY = "x-cairn-reason"
REASON_LEASE_LOST = "LEASE_LOST"
# Request metadata on a follower-to-leader forward: the leader never forwards it again.
FORWARDED_KEY = "x-cairn-forwarded"
