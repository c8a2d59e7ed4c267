"""Cairn's chaos suite: real node processes, real faults, and checkers over recorded histories."""
