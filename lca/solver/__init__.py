"""The inventory solver: technology and intervention matrices, footprints and contribution trees.

A product system has one column per (process, reference exchange): :func:`build_system` links
a bundle's processes into the technology matrix ``A`` and the intervention matrix ``B`` by the
automatic linking rule documented in :mod:`lca.solver.build` (own reference flows, demands
linked to one provider, cut-offs, allocation of multi-output processes, life cycle models);
:class:`TechnoSystem` (:mod:`lca.solver.system`) checks it is well posed, LU-factorises ``A``
once and reuses the factors; :mod:`lca.solver.results` turns solutions into a
:class:`Footprint` per product, :func:`all_footprints` from one transposed solve, and
:class:`ContributionNode` trees.
"""

from lca.solver.build import build_system
from lca.solver.results import (
    UNIT,
    ContributionNode,
    Footprint,
    all_footprints,
    contribution_tree,
    footprint,
    resolve_method,
)
from lca.solver.system import LOOP_TOLERANCE, Column, Cutoff, CutoffKind, Link, LinkRule, TechnoSystem

__all__ = [
    "LOOP_TOLERANCE",
    "UNIT",
    "Column",
    "ContributionNode",
    "Cutoff",
    "CutoffKind",
    "Footprint",
    "Link",
    "LinkRule",
    "TechnoSystem",
    "all_footprints",
    "build_system",
    "contribution_tree",
    "footprint",
    "resolve_method",
]
