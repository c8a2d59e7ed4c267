"""The read index's rounds: a read is confirmed only by a majority answering messages sent after it arrived."""

from __future__ import annotations

import pytest

from cairn_server.errors import Unavailable
from cairn_server.raft.read_index import ReadRounds

A, B, C, D = "a", "b", "c", "d"


def test_a_read_needs_a_majority_to_answer_a_message_stamped_after_it_arrived() -> None:
    rounds = ReadRounds(members=3)
    old = rounds.stamp()  # a heartbeat sent before the read: its answers prove nothing about the read
    read = rounds.open()
    rounds.answered(A, old)
    assert not read.done()
    number = rounds.stamp()  # the heartbeat the read asked for
    assert number > old
    rounds.answered(A, number)  # with the leader itself: 2 of 3
    assert read.done() and read.result() is None


def test_reads_arriving_before_the_next_message_share_its_round_and_later_ones_wait_for_the_next() -> None:
    rounds = ReadRounds(members=5)
    first, second = rounds.open(), rounds.open()
    number = rounds.stamp()
    late = rounds.open()  # arrived after a message with `number` left: that message cannot confirm it
    rounds.answered(A, number)
    assert not first.done()
    rounds.answered(B, number)  # 3 of 5 with the leader
    assert first.done() and second.done() and not late.done()
    later = rounds.stamp()
    rounds.answered(C, later)
    rounds.answered(A, later - 1)  # stale: not counted for the later round
    assert not late.done()
    rounds.answered(D, later)
    assert late.done()


def test_a_change_of_leadership_fails_waiting_reads_and_forgets_answers() -> None:
    rounds = ReadRounds(members=3)
    read = rounds.open()
    number = rounds.stamp()
    rounds.reset(lambda: Unavailable("leadership changed"))
    with pytest.raises(Unavailable):
        read.result(0)
    again = rounds.open()
    rounds.answered(A, number)  # an answer to a message of the old leadership
    assert not again.done()
    rounds.answered(A, rounds.stamp())
    assert again.done()


def test_a_single_member_confirms_at_once() -> None:
    assert ReadRounds(members=1).open().done()
