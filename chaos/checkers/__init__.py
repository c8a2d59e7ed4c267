"""Checkers over a recorded history; each returns a Verdict."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Verdict:
    name: str
    valid: bool | None  # None: unknown (for example the search hit its time limit)
    violations: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "unknown" if self.valid is None else ("pass" if self.valid else "FAIL")
