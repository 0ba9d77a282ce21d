"""Sign conventions of ``A`` and ``B`` (stated in :mod:`lca.solver.build`), shared by building and characterisation."""

from __future__ import annotations

from lca.model import Flow

__all__: list[str] = []  # package-internal helpers


def _supply_sign(flow: Flow, direction: str) -> float:
    if flow.flow_type == "waste":
        return 1.0 if direction == "input" else -1.0
    return 1.0 if direction == "output" else -1.0


def _is_resource(flow: Flow) -> bool:
    return any(
        c.strip().casefold().startswith(("resource", "natural resource")) or "资源" in c
        for c in flow.compartment
    )


def _natural_sign(flow: Flow, direction: str) -> float:
    natural = "input" if _is_resource(flow) else "output"
    return 1.0 if direction == natural else -1.0
