"""The options a write or delete request carries besides its body."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WriteOptions:
    manager: str = ""
    dry_run: bool = False
    force: bool = False
    field_validation: str = ""
    # Filled in while the request is served: the `Warning` headers of the response.
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeleteOptions:
    propagation: str = ""
    precondition_uid: str = ""
    precondition_rv: str = ""
    dry_run: bool = False
    grace_period: int | None = None
