"""Results of a product system: footprints of one or every product, and contribution trees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lca.errors import NotFound
from lca.gwp import DEFAULT_GWP_SET, GWP_SETS, characterisation_method, method_from_lcia
from lca.model import Bundle, LCIAMethod
from lca.solver.build import build_system
from lca.solver.specs import _ref_unit
from lca.solver.system import TechnoSystem

__all__ = [
    "UNIT",
    "ContributionNode",
    "Footprint",
    "all_footprints",
    "contribution_tree",
    "footprint",
    "resolve_method",
]

UNIT = "kg CO2e"


def resolve_method(bundle: Bundle, method: str | LCIAMethod = DEFAULT_GWP_SET) -> LCIAMethod:
    """``"AR5"`` / ``"AR6"`` -> our GWP100 method over the bundle; a UUID -> the bundle's method.

    Raises
    ------
    NotFound
        When ``method`` is neither a GWP set nor the UUID of a method in the bundle.
    """
    if isinstance(method, LCIAMethod):
        return method
    name = method.strip()
    if name.upper() in GWP_SETS:
        return characterisation_method(bundle, name.upper())
    if name.lower() in bundle.methods:
        return method_from_lcia(bundle, name)
    known = ", ".join([*GWP_SETS, *bundle.methods]) or "none"
    raise NotFound(f"method {method!r} is neither a GWP set nor an LCIA method of the bundle; accepted: {known}")


@dataclass
class ContributionNode:
    """One process in the supply chain of a footprint, per the amount of its product needed."""

    process: str
    reference: str
    name: dict[str, str]
    amount: float
    """Amount of this node's reference product needed (reference unit)."""
    unit: str
    direct: float
    """kg CO2e emitted by this process itself for ``amount``."""
    cumulative: float
    """kg CO2e of ``amount`` over its whole supply chain (from the solution, so loops included)."""
    share: float
    """``cumulative`` / the root's total."""
    loop: bool = False
    """This process is already on the path from the root: not expanded further."""
    expandable: bool = False
    """Has suppliers that were not expanded (depth limit); expand with :func:`contribution_tree`."""
    path: tuple[str, ...] = ()
    """Column keys from the root down to this node's parent."""
    children: list[ContributionNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "reference": self.reference,
            "name": self.name,
            "amount": self.amount,
            "unit": self.unit,
            "direct": self.direct,
            "cumulative": self.cumulative,
            "share": self.share,
            "loop": self.loop,
            "expandable": self.expandable,
            "children": [c.to_dict() for c in self.children],
        }


def contribution_tree(
    system: TechnoSystem,
    root: str | int,
    depth: int = 1,
    *,
    method: str | LCIAMethod = DEFAULT_GWP_SET,
    amount: float = 1.0,
    reference: str | None = None,
    path: tuple[str, ...] = (),
    total: float | None = None,
) -> ContributionNode:
    """The supply chain of ``amount`` of ``root``'s product, expanded ``depth`` layers down.

    Each node's suppliers are the columns it demands: a supplier ``k`` of node ``j`` needs
    ``-A[k, j] * amount_j / A[j, j]`` of its product. ``direct = h_j * amount_j / A[j, j]`` and
    ``cumulative = lambda_j * amount_j`` with ``lambda`` from the transposed solve, so that a
    node's cumulative is its direct plus its children's cumulative. A supplier already on the
    path is a loop: shown with its cumulative, not expanded. Expand a node further by calling
    again with ``root=node.process``, ``reference=node.reference``, ``amount=node.amount``,
    ``path=node.path + (its key,)`` and ``total=`` the root's total.
    """
    m = resolve_method(system.bundle, method)
    lam = system.footprints(m)
    h = system.direct_impacts(m)
    start = root if isinstance(root, int) else system.column_of(root, reference)
    grand = total if total is not None else float(lam[start] * amount)
    A = system.A.tocsc()
    diag = A.diagonal()

    def node(j: int, amt: float, trail: tuple[str, ...], left: int) -> ContributionNode:
        col = system.columns[j]
        proc = system.bundle.processes[col.process]
        flow = system.bundle.flows[col.flow]
        activity = amt / diag[j]
        cumulative = float(lam[j] * amt)
        here = ContributionNode(
            process=col.process,
            reference=col.reference,
            name={k: v for k, v in proc.name.items() if k in ("en", "zh")},
            amount=amt,
            unit=_ref_unit(system.bundle, flow),
            direct=float(h[j] * activity),
            cumulative=cumulative,
            share=cumulative / grand if grand else 0.0,
            path=trail,
        )
        lo, hi = A.indptr[j], A.indptr[j + 1]
        suppliers = [(int(k), float(v)) for k, v in zip(A.indices[lo:hi], A.data[lo:hi], strict=True) if k != j and v != 0]
        if col.key in trail:
            here.loop = True
            return here
        if left <= 0:
            here.expandable = bool(suppliers)
            return here
        for k, v in suppliers:
            here.children.append(node(k, -v * activity, (*trail, col.key), left - 1))
        here.children.sort(key=lambda c: -abs(c.cumulative))
        return here

    return node(start, amount, path, depth)


@dataclass
class Footprint:
    """The carbon footprint of one reference unit of a process's reference flow."""

    process: str
    reference: str
    method: str
    method_uuid: str
    gwp_set: str | None
    total: float
    by_gas: dict[str, float]
    fossil: float
    biogenic: float
    land_use: float
    scaling: dict[str, float]
    """Column key -> scaling factor (activity) of every column with a non-zero one."""
    cutoffs: list[dict[str, Any]]
    """Cut-off exchanges of the columns used, amounts scaled to one unit of the root."""
    unit: str = UNIT
    tree: ContributionNode | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "process": self.process,
            "method": self.method,
            "gwp_set": self.gwp_set,
            "unit": self.unit,
            "total": self.total,
            "by_gas": dict(self.by_gas),
            "fossil": self.fossil,
            "biogenic": self.biogenic,
            "land_use": self.land_use,
            "cutoffs": list(self.cutoffs),
        }
        if self.tree is not None:
            out["tree"] = self.tree.to_dict()
        return out


def footprint(
    bundle: Bundle,
    process_uuid: str,
    method: str | LCIAMethod = DEFAULT_GWP_SET,
    tree_depth: int | None = None,
    *,
    reference: str | None = None,
    system: TechnoSystem | None = None,
    skip_ill_posed: bool = False,
) -> Footprint:
    """kg CO2e per reference unit of ``process_uuid``'s reference flow.

    Parameters
    ----------
    method
        ``"AR5"`` (default), ``"AR6"``, the UUID of an LCIA method of the bundle, or a method.
    tree_depth
        When given, attach the contribution tree expanded that many layers.
    system
        A system already built (and factorised) containing the process, e.g. the whole bundle;
        by default the system reachable from the process is built.

    Raises
    ------
    NotFound, NoReferenceFlow, SingularSystem, UnitError
        See :func:`build_system` and :meth:`TechnoSystem.factorize`.
    """
    m = resolve_method(bundle, method)
    if system is None:
        system = build_system(bundle, root=process_uuid, reference=reference, skip_ill_posed=skip_ill_posed)
    j = system.column_of(process_uuid, reference)
    demand = np.zeros(system.size)
    demand[j] = 1.0
    s = system.solve(demand)
    c, species, origins = system.characterisation(m)
    per_flow = c * np.asarray(system.B @ s)
    by_gas: dict[str, float] = {}
    split = {"fossil": 0.0, "biogenic": 0.0, "land_use": 0.0}
    for i in np.flatnonzero(c):
        by_gas[species[i]] = by_gas.get(species[i], 0.0) + float(per_flow[i])
        split[origins[i]] += float(per_flow[i])
    used = {k for k in np.flatnonzero(s)}
    cutoffs = [cut.to_dict(float(s[cut.column])) for cut in system.cutoffs if cut.column in used]
    col = system.columns[j]
    fp = Footprint(
        process=col.process,
        reference=col.reference,
        method=m.display_name(),
        method_uuid=m.uuid,
        gwp_set=m.gwp_set,
        total=float(per_flow.sum()),
        by_gas=dict(sorted(by_gas.items(), key=lambda kv: -abs(kv[1]))),
        fossil=split["fossil"],
        biogenic=split["biogenic"],
        land_use=split["land_use"],
        scaling={system.columns[k].key: float(s[k]) for k in sorted(used)},
        cutoffs=cutoffs,
    )
    if tree_depth is not None:
        fp.tree = contribution_tree(system, j, tree_depth, method=m)
    return fp


def all_footprints(
    bundle: Bundle,
    method: str | LCIAMethod = DEFAULT_GWP_SET,
    *,
    system: TechnoSystem | None = None,
    skip_ill_posed: bool = False,
) -> dict[str, float]:
    """kg CO2e per reference unit of every process of the bundle, from one transposed solve.

    Keys are column keys: the process UUID, or ``"<uuid>:<internal_id>"`` for each reference
    flow of a multi-output process. With ``skip_ill_posed`` the ill-posed processes are left
    out (see :func:`build_system`); otherwise they raise.
    """
    m = resolve_method(bundle, method)
    if system is None:
        system = build_system(bundle, skip_ill_posed=skip_ill_posed)
    lam = system.footprints(m)
    return {col.key: float(lam[col.index]) for col in system.columns}
