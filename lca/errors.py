"""Errors and diagnostics of the LCA domain.

Exception tree::

    LCAError
    ├── ImportFailed          an import source could not be read or failed validation
    ├── UnitError             unknown or inconvertible unit
    ├── SolverError           the inventory cannot be computed
    │   ├── SingularSystem        the technology matrix is singular or ill-posed
    │   └── NoReferenceFlow       a process has no usable reference flow
    └── NotFound              a dataset is not in the store or bundle
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = [
    "Diagnostic",
    "ImportFailed",
    "LCAError",
    "NoReferenceFlow",
    "NotFound",
    "SingularSystem",
    "SolverError",
    "UnitError",
]


class Diagnostic(BaseModel):
    """One finding about input data: where it is, which field, which value, and what is accepted."""

    severity: Literal["error", "warning", "info"]
    rule: str
    """Short rule name, e.g. ``unknown-unit``, ``mass-balance``, ``xsd-deviation``."""
    message: str
    file: str | None = None
    location: str | None = None
    """Row number (``row 7``) or XML / JSON path."""
    field: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = ":".join(x for x in (self.file, self.location) if x)
        parts = [f"{self.severity}[{self.rule}]"]
        if where:
            parts.append(where)
        if self.field:
            parts.append(f"field {self.field!r}")
        if self.value is not None:
            parts.append(f"value {self.value!r}")
        return " ".join(parts) + f": {self.message}"


class LCAError(Exception):
    """Base class of the LCA domain's errors."""


class ImportFailed(LCAError):
    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"]
        shown = "\n".join(f"  {d}" for d in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"import failed with {len(errors)} error(s):\n{shown}{more}")


class UnitError(LCAError):
    pass


class NotFound(LCAError):
    pass


class SolverError(LCAError):
    pass


class SingularSystem(SolverError):
    def __init__(self, message: str, processes: list[str]):
        self.processes = processes
        super().__init__(message)


class NoReferenceFlow(SolverError):
    def __init__(self, message: str, processes: list[str]):
        self.processes = processes
        super().__init__(message)
