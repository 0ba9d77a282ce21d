"""Building a product system from a bundle: ``A`` and ``B`` by the automatic linking rule.

Matrices
--------
A system has one column per (process, reference exchange). The technology matrix ``A`` is
square: row ``i`` is the reference flow of column ``i`` *as provided by that column* (two
processes making the same product are two rows, as in openLCA's provider-flow index). The
intervention matrix ``B`` has one row per elementary flow. All amounts are converted to the
flow's reference unit with :func:`lca.units.to_reference_amount`.

Signs. A product output and a waste input *supply* (+), a product input and a waste output
*demand* (-): a waste treatment process, whose reference flow is the waste it takes in,
supplies treatment. In ``B`` an exchange in the flow's natural direction is + (emissions
out, resources in: "Resources ..." / "natural resource" / ``资源`` compartments), the other
direction -. A characterisation factor applies to the natural direction; a factor given for
the other direction is negated.

Automatic linking rule
----------------------
1. Own reference flow. An exchange of a column's own reference flow is not linked: its
   supply-signed amount adds to the diagonal, so ``A[j, j]`` = output - input of the own
   reference flow (input - output for a waste). An exchange of another reference flow of the
   same process (a co-product) is linked to that process's column for it.
2. Demands. A product input, or a waste output, whose flow is the reference flow of another
   process in the bundle is linked to one provider column. Providers are the processes whose
   reference exchange of that flow supplies it (a reference exchange that is itself a product
   input or a waste output supplies nothing and makes no provider). The provider is: the
   exchange's explicit ``provider`` when that process is a provider; else a provider whose
   location equals the exchange's ``location``, or when it has none the consumer's location;
   else the provider with the smallest UUID (ties between reference exchanges of one process:
   smallest internal id). Then ``A[provider, consumer] -= amount``.
3. Cut-offs. A demand with no provider is cut off and listed in ``cutoffs`` (kind ``input`` or
   ``waste``); a product output or waste input that is not a reference flow is not credited
   (no substitution) and listed with kind ``by-product``. Exchanges of amount 0 are skipped.
4. Multi-output processes. A process with several reference exchanges gives one column per
   reference exchange; every other exchange enters column ``r`` multiplied by its allocation
   factor ``exchange.allocation[r]`` (0 when absent for ``r``); a non-reference exchange with
   no allocation factors at all makes the process unusable (:class:`NoReferenceFlow`). The other
   reference exchanges do not enter column ``r``. Single-output processes ignore allocation.
5. Life cycle models. With a :class:`~lca.model.LifeCycleModel` the columns are the model's
   processes and a demand is linked only through an explicit model link (recipient, flow) ->
   provider; rule 1 still applies; everything else is cut off.

Which system. ``build_system(bundle, root=uuid)`` takes the columns reachable from the root's
column through links; ``model=`` the model's processes; neither: every process of the bundle.

Ill-posed systems
-----------------
:class:`NoReferenceFlow`: a process without a reference exchange, whose reference exchange
is missing or names an unknown or an *elementary* flow, or a multi-output process without
allocation factors. :class:`SingularSystem`: a column whose net reference output ``A[j, j]``
is zero or negative (the process consumes at least as much of its reference flow as it
supplies). Loops that consume at least as much as they supply, and an ``A`` that the LU
factorisation finds singular, are found by :meth:`TechnoSystem.factorize
<lca.solver.system.TechnoSystem.factorize>` (see :mod:`lca.solver.system`). Errors list
every offending process with its UUID and name. ``skip_ill_posed=True`` instead leaves the
processes this module rejects out (listed in ``excluded``) and cuts off the demands they
would have met.
"""

from __future__ import annotations

from collections import deque

import scipy.sparse as sp

from lca.errors import NoReferenceFlow, NotFound, SingularSystem
from lca.model import Bundle, Exchange, LifeCycleModel, Process
from lca.solver.signs import _natural_sign, _supply_sign
from lca.solver.specs import _amount, _Problem, _ref_unit, _Spec, _validate
from lca.solver.system import _MAX_NAMED, Column, Cutoff, CutoffKind, Link, LinkRule, TechnoSystem

__all__ = ["build_system"]


class _Builder:
    def __init__(self, bundle: Bundle, skip_ill_posed: bool, model: LifeCycleModel | None):
        self.bundle = bundle
        self.skip = skip_ill_posed
        self.model = model
        self.specs: dict[str, _Spec | _Problem] = {}
        self.columns: list[Column] = []
        self.index: dict[tuple[str, str], int] = {}
        self.queue: deque[int] = deque()
        self.a_rows: list[int] = []
        self.a_cols: list[int] = []
        self.a_vals: list[float] = []
        self.b_rows: list[int] = []
        self.b_cols: list[int] = []
        self.b_vals: list[float] = []
        self.elementary: dict[str, int] = {}
        self.links: list[Link] = []
        self.cutoffs: list[Cutoff] = []
        self.notes: list[str] = []
        self.problems: dict[str, _Problem] = {}
        # flow uuid -> [(process, reference id)] of every process naming it as reference flow
        self.providers: dict[str, list[tuple[str, str]]] = {}
        for pid in sorted(bundle.processes):
            proc = bundle.processes[pid]
            for rid in proc.reference_exchanges:
                x = proc.exchange(rid)
                if x is None:
                    continue
                flow = bundle.flows.get(x.flow)
                # A reference exchange that demands its flow (a product input) supplies nothing.
                if flow is None or flow.flow_type == "elementary" or _supply_sign(flow, x.direction) < 0:
                    continue
                self.providers.setdefault(x.flow, []).append((pid, rid))
        for lst in self.providers.values():
            lst.sort()
        self.model_links: dict[tuple[str, str], list[str]] = {}
        if model is not None:
            for link in model.links:
                key = (link.recipient.lower(), link.flow.lower())
                self.model_links.setdefault(key, []).append(link.provider.lower())

    # validation

    def spec(self, pid: str) -> _Spec | _Problem:
        if pid not in self.specs:
            self.specs[pid] = _validate(self.bundle, self.bundle.processes[pid])
        return self.specs[pid]

    def usable(self, pid: str) -> bool:
        return isinstance(self.spec(pid), _Spec)

    # columns

    def add_process(self, pid: str) -> list[int]:
        spec = self.spec(pid)
        if isinstance(spec, _Problem):
            self.problems[pid] = spec
            return []
        return [j for rid, _, _ in spec.refs if (j := self.add_column(pid, rid)) is not None]

    def add_column(self, pid: str, rid: str) -> int | None:
        if (pid, rid) in self.index:
            return self.index[(pid, rid)]
        spec = self.spec(pid)
        if isinstance(spec, _Problem):
            self.problems[pid] = spec
            return None
        flow = next(f for r, f, _ in spec.refs if r == rid)
        key = pid if len(spec.refs) == 1 else f"{pid}:{rid}"
        j = len(self.columns)
        self.columns.append(Column(index=j, process=pid, reference=rid, flow=flow, key=key))
        self.index[(pid, rid)] = j
        self.queue.append(j)
        return j

    def _elementary_row(self, flow: str) -> int:
        if flow not in self.elementary:
            self.elementary[flow] = len(self.elementary)
        return self.elementary[flow]

    def choose_provider(self, consumer: Process, x: Exchange) -> tuple[str, str, LinkRule] | None:
        candidates = [c for c in self.providers.get(x.flow, []) if c[0] != consumer.uuid]
        if self.skip:
            candidates = [c for c in candidates if self.usable(c[0])]
        if not candidates:
            return None
        if x.provider:
            wanted = x.provider.strip().lower()
            explicit = [c for c in candidates if c[0] == wanted]
            if explicit:
                return explicit[0][0], explicit[0][1], "explicit"
            self.notes.append(
                f"process {consumer.uuid}, exchange {x.internal_id}: explicit provider {wanted} does not "
                f"supply flow {x.flow} here (absent, not its reference flow, or excluded); linked automatically"
            )
        location = x.location or consumer.location
        if location:
            same = [c for c in candidates if self.bundle.processes[c[0]].location == location]
            if same:
                return same[0][0], same[0][1], "location"
        return candidates[0][0], candidates[0][1], "smallest-uuid"

    def model_provider(self, consumer: Process, x: Exchange) -> tuple[str, str, LinkRule] | None:
        for pid in sorted(self.model_links.get((consumer.uuid, x.flow), [])):
            for c in self.providers.get(x.flow, []):
                if c[0] == pid:
                    return c[0], c[1], "model"
            self.notes.append(
                f"model link {pid} -> {consumer.uuid} for flow {x.flow}: the provider does not have "
                "that flow as reference flow; the demand is cut off"
            )
        return None

    def fill(self, j: int) -> None:
        col = self.columns[j]
        proc = self.bundle.processes[col.process]
        spec = self.spec(col.process)
        assert isinstance(spec, _Spec)
        ref_ids = {rid for rid, _, _ in spec.refs}
        own_flows = {flow: rid for rid, flow, _ in spec.refs}
        diag = next(net for rid, _, net in spec.refs if rid == col.reference)
        self.a_rows.append(j)
        self.a_cols.append(j)
        self.a_vals.append(diag)
        for x in proc.exchanges:
            if x.internal_id in ref_ids or x.amount == 0:
                continue
            w = spec.weights[x.internal_id][col.reference] if spec.weights else 1.0
            if w == 0:
                continue
            flow = self.bundle.flows.get(x.flow)
            if flow is None:
                self.cutoffs.append(Cutoff(
                    j, proc.uuid, x.internal_id, x.flow, x.flow, "input", x.amount * w, x.unit,
                    "flow not in the bundle",
                ))
                continue
            amount = _amount(self.bundle, proc, x) * w
            if flow.flow_type == "elementary":
                self.b_rows.append(self._elementary_row(x.flow))
                self.b_cols.append(j)
                self.b_vals.append(_natural_sign(flow, x.direction) * amount)
                continue
            sign = _supply_sign(flow, x.direction)
            if x.flow == col.flow:
                continue  # already in the diagonal
            if x.flow in own_flows:
                k = self.add_column(proc.uuid, own_flows[x.flow])
                assert k is not None
                self._link(j, x, k, sign * amount, "own")
                continue
            if sign > 0:
                self.cutoffs.append(Cutoff(
                    j, proc.uuid, x.internal_id, x.flow, flow.display_name(), "by-product", amount,
                    _ref_unit(self.bundle, flow), "not a reference flow: not credited (no substitution)",
                ))
                continue
            chosen = self.model_provider(proc, x) if self.model is not None else self.choose_provider(proc, x)
            kind: CutoffKind = "waste" if flow.flow_type == "waste" else "input"
            if chosen is None:
                reason = "no model link" if self.model is not None else "no process in the bundle supplies it"
                self.cutoffs.append(Cutoff(
                    j, proc.uuid, x.internal_id, x.flow, flow.display_name(), kind, amount,
                    _ref_unit(self.bundle, flow), reason,
                ))
                continue
            pid, rid, rule = chosen
            k = self.add_column(pid, rid)
            if k is None:
                continue  # strict mode: the provider is ill-posed and will be reported
            self._link(j, x, k, sign * amount, rule)

    def _link(self, j: int, x: Exchange, k: int, value: float, rule: LinkRule) -> None:
        self.a_rows.append(k)
        self.a_cols.append(j)
        self.a_vals.append(value)
        self.links.append(Link(consumer=j, exchange=x.internal_id, provider=k, rule=rule))

    def run(self) -> None:
        while self.queue:
            self.fill(self.queue.popleft())

    def raise_problems(self) -> None:
        if not self.problems:
            return
        problems = [self.problems[p] for p in sorted(self.problems)]
        processes = [p.process for p in problems]
        lines = "\n  ".join(p.message for p in problems[:_MAX_NAMED])
        more = f"\n  ... and {len(problems) - _MAX_NAMED} more" if len(problems) > _MAX_NAMED else ""
        head = f"{len(problems)} process(es) make the product system ill-posed:\n  {lines}{more}"
        if any(p.kind == "no-reference" for p in problems):
            raise NoReferenceFlow(head, processes)
        raise SingularSystem(head, processes)


def build_system(
    bundle: Bundle,
    root: str | None = None,
    model: LifeCycleModel | str | None = None,
    *,
    reference: str | None = None,
    skip_ill_posed: bool = False,
) -> TechnoSystem:
    """Build ``A`` and ``B`` by the linking rule of the module docstring.

    Parameters
    ----------
    bundle
        Processes, flows, flow properties and unit groups.
    root
        UUID of a process: the system is what its column reaches through links.
    model
        A life cycle model (or its UUID in the bundle): its processes, linked by its links only.
    reference
        internal_id of the root's reference exchange, for a multi-output root (default: first).
    skip_ill_posed
        Leave ill-posed processes out (``system.excluded``) instead of raising; their products
        are cut off where demanded. The root itself must be well posed.

    Raises
    ------
    NotFound
        When the root, the model or a process of the model is not in the bundle.
    NoReferenceFlow, SingularSystem
        When a process of the system is ill-posed (see the module docstring).
    UnitError
        When an amount cannot be converted to its flow's reference unit.
    """
    if isinstance(model, str):
        found = bundle.models.get(model.strip().lower())
        if found is None:
            raise NotFound(f"life cycle model {model} is not in the bundle")
        model = found
    builder = _Builder(bundle, skip_ill_posed, model)
    root_index: int | None = None
    if model is not None:
        members = [model.reference_process.lower(), *(p.lower() for p in model.processes)]
        members += [link.provider.lower() for link in model.links] + [link.recipient.lower() for link in model.links]
        missing = sorted({p for p in members if p not in bundle.processes})
        if missing:
            raise NotFound(f"life cycle model {model.uuid} names processes not in the bundle: {', '.join(missing)}")
        root = root or model.reference_process
        for pid in dict.fromkeys(members):
            builder.add_process(pid)
    elif root is None:
        for pid in sorted(bundle.processes):
            builder.add_process(pid)
    if root is not None:
        rid = root.strip().lower()
        if rid not in bundle.processes:
            raise NotFound(f"process {root} is not in the bundle")
        spec = builder.spec(rid)
        if isinstance(spec, _Problem):
            builder.problems[rid] = spec
            builder.raise_problems()
        assert isinstance(spec, _Spec)
        ref = reference or spec.refs[0][0]
        if ref not in {r for r, _, _ in spec.refs}:
            raise NotFound(f"process {root} has no reference exchange {reference!r}")
        root_index = builder.add_column(rid, ref)
    builder.run()
    excluded: dict[str, str] = {}
    if skip_ill_posed:
        excluded = {p: prob.message for p, prob in sorted(builder.problems.items())}
        if root is not None and root.strip().lower() in excluded:
            builder.raise_problems()
    else:
        builder.raise_problems()
    n = len(builder.columns)
    A = sp.csc_matrix((builder.a_vals, (builder.a_rows, builder.a_cols)), shape=(n, n))
    A.sum_duplicates()
    m = len(builder.elementary)
    B = sp.csc_matrix((builder.b_vals, (builder.b_rows, builder.b_cols)), shape=(m, n))
    B.sum_duplicates()
    return TechnoSystem(
        bundle=bundle,
        columns=builder.columns,
        A=A,
        B=B,
        elementary=list(builder.elementary),
        links=builder.links,
        cutoffs=builder.cutoffs,
        notes=builder.notes,
        excluded=excluded,
        root=root_index,
    )
