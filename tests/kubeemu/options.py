"""The options a write or delete request carries besides its body."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WriteOptions:
    manager: str = ""
    dry_run: bool = False
    force: bool = False
    field_validation: str = ""


@dataclass(frozen=True)
class DeleteOptions:
    propagation: str = ""
    precondition_uid: str = ""
    precondition_rv: str = ""
    dry_run: bool = False
    grace_period: int | None = None
