"""The LCA domain shared by every role: data model, units, GWP tables, solver and I/O."""

from lca.errors import (
    Diagnostic,
    ImportFailed,
    LCAError,
    NotFound,
    SingularSystem,
    SolverError,
    UnitError,
)
from lca.model import (
    Bundle,
    Exchange,
    Flow,
    FlowProperty,
    LCIAMethod,
    Process,
    UnitGroup,
)

__all__ = [
    "Bundle",
    "Diagnostic",
    "Exchange",
    "Flow",
    "FlowProperty",
    "ImportFailed",
    "LCAError",
    "LCIAMethod",
    "NotFound",
    "Process",
    "SingularSystem",
    "SolverError",
    "UnitError",
    "UnitGroup",
]
