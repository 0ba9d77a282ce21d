"""The one interface a round's aggregation protocol implements; ``aggregator.rounds`` picks it once per round.

The lifecycle (states, compare-and-set transitions, the log, publication) is the same for every
protocol and lives in ``aggregator.rounds``; what differs (what a spec needs at creation, what opening
fixes, how inputs arrive, how collection ends, what survives a restart) is a method here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from aggregator.errors import Conflict
from aggregator.round_context import RoundContext
from aggregator.round_models import DecryptionRequest, PartialReceipt
from aggregator.store import ContributionRow, MemberRow, RoundRow, Transaction
from protocols.spec import RoundSpec

__all__ = ["RoundProtocol"]


class RoundProtocol(ABC):
    """What differs between ``secagg`` and ``paillier`` rounds.

    Methods that take a ``tx`` run inside the caller's transaction: a raise rolls the whole step
    back, so an implementation MUST NOT commit, and MUST raise an ``aggregator.errors`` error (they
    map to HTTP statuses) for anything it refuses.
    """

    name: ClassVar[str]
    """The spec's ``protocol`` value this implementation serves."""

    @abstractmethod
    def prepare(self, ctx: RoundContext, spec: RoundSpec) -> dict[str, Any]:
        """Check that the aggregator can run ``spec`` and return the parameters stored with the round.

        MUST raise ``SpecRejected`` for a spec the protocol cannot run and ``Unavailable`` when a
        component it needs is not configured. Called before the draft is stored.
        """

    @abstractmethod
    def on_open(self, tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime) -> None:
        """Fix what the protocol needs at opening (after the spec's log entry).

        MAY refuse (``Conflict``, ``SpecRejected``): the round then stays a draft.
        """

    @abstractmethod
    def parse_contribution(self, round_id: str, body: bytes) -> Any:
        """Parse a member's posted contribution; MUST raise ``Conflict`` if this protocol takes none over HTTP."""

    @abstractmethod
    def check_contribution(self, row: RoundRow, spec: RoundSpec, member: MemberRow, contribution: Any) -> None:
        """Refuse a parsed contribution that is not the member's own or does not verify (``Forbidden``, ``BadRequest``).

        Called with the round open and before its deadline; the caller then checks one-per-member
        and ``max_participants``, then :meth:`check_against`.
        """

    @abstractmethod
    def check_against(self, round_id: str, contribution: Any, existing: list[ContributionRow]) -> None:
        """Refuse a contribution that copies part of one already stored (``BadRequest``)."""

    @abstractmethod
    def close(
        self, tx: Transaction, ctx: RoundContext, row: RoundRow, spec: RoundSpec, now: datetime
    ) -> Callable[[], None] | None:
        """End collection of an open round: move it on (MUST leave ``open`` by a compare-and-set).

        Returns work to start once the transaction has committed (a ``secagg`` run), or ``None``.
        """

    @abstractmethod
    def resume(self, ctx: RoundContext, row: RoundRow) -> str:
        """Bring a round caught in ``collecting`` or ``aggregating`` by a restart to a consistent state.

        Returns what was done, for the start-up log. MUST NOT count anything twice.
        """

    def custodian_keys(self, row: RoundRow) -> dict[str, str]:
        """Fingerprint -> public key of the round's key custodians; none by default."""
        return {}

    def decryption_request(self, tx: Transaction, row: RoundRow) -> DecryptionRequest:
        """What the custodians decrypt; by default the protocol has no custodians (``Conflict``)."""
        raise self._no_custodians(row)

    def submit_partial(self, ctx: RoundContext, row: RoundRow, body: bytes) -> PartialReceipt:
        """Store a custodian's partial decryption; by default the protocol has no custodians (``Conflict``)."""
        raise self._no_custodians(row)

    def _no_custodians(self, row: RoundRow) -> Conflict:
        return Conflict(f"round {row.id!r} uses protocol {row.protocol!r}; only 'paillier' rounds are decrypted")
