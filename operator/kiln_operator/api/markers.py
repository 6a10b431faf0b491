"""Schema markers: what a field needs in the CRD that Python's type system cannot say.

They ride in `typing.Annotated` metadata. Pydantic ignores them; the CRD generator
(`kiln_operator.crdgen`) reads them. Keeping them as plain frozen dataclasses means the API
models stay ordinary pydantic models that the reconcilers can also parse objects with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Rule:
    """A CEL validation rule (`x-kubernetes-validations`) on the annotated field or model.

    The message is what the API server returns when the rule fails; write it for the user who
    applied the manifest. Every list or string the rule touches must have a bound (maxItems,
    maxLength) or the API server refuses the CRD for exceeding its CEL cost budget.
    """

    rule: str
    message: str
    reason: Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"] | None = None

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Pattern:
    """A regular expression (ECMA 262 / RE2 compatible: no look-arounds) the string matches."""

    regex: str


@dataclass(frozen=True)
class Format:
    """An OpenAPI format the API server understands (`date-time`, `int32`, `int64`...)."""

    name: str


@dataclass(frozen=True)
class ListType:
    """`x-kubernetes-list-type` (and map keys): how server-side apply merges the list."""

    kind: Literal["atomic", "set", "map"]
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntOrString:
    """The value may be an integer or a string (`x-kubernetes-int-or-string`)."""


@dataclass(frozen=True)
class SchemaDefault:
    """A default written into the schema where the Python default cannot express it."""

    value: Any


@dataclass(frozen=True)
class Example:
    """An example value shown in the API reference."""

    value: Any


@dataclass(frozen=True)
class Extra:
    """Further OpenAPI keywords, merged into the generated schema as given."""

    keywords: dict[str, Any] = field(default_factory=dict)
