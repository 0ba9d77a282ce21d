"""The aggregator's side of a ``paillier`` round: check contributions and multiply them as they arrive."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from protocols.paillier._wire import mulmod
from protocols.paillier.contribute import verify_contribution
from protocols.paillier.errors import ContributionRejected
from protocols.paillier.keys import SplitPublicKey
from protocols.paillier.messages import AggregateCiphertext, SignedContribution
from protocols.paillier.packing import PackingLayout

__all__ = ["RoundAccumulator", "aggregate"]


@dataclass
class RoundAccumulator:
    """The aggregator's state for one round: accepted contributions and their running product.

    Contributions arrive at any time within the window; each accepted one is multiplied in at
    once, so closing the round costs nothing. ``contributions`` is the log the custodians get.
    """

    round_id: str
    public_key: SplitPublicKey
    layout: PackingLayout
    roster: frozenset[str]
    closes_at: datetime | None = None
    contributions: list[SignedContribution] = field(default_factory=list)
    product: list[int] | None = None
    _senders: set[str] = field(default_factory=set, repr=False)
    _ciphertexts: set[int] = field(default_factory=set, repr=False)

    def accept(self, contribution: SignedContribution, *, now: datetime | None = None) -> None:
        """Verify ``contribution`` and multiply it into the running product.

        Parameters
        ----------
        contribution
            The incoming contribution.
        now
            Current time; required when the round has ``closes_at``.

        Raises
        ------
        ContributionRejected
            Window closed, round full, wrong round or key, not on the roster, bad digest or
            signature, a second contribution from the same member (replay), or ciphertexts copied
            from another member's contribution. A rejected contribution leaves the state unchanged.
        """
        if self.closes_at is not None:
            if now is None:
                raise ContributionRejected("round has a closing time; pass now=")
            if now >= self.closes_at:
                raise ContributionRejected(f"round {self.round_id!r} closed at {self.closes_at.isoformat()}")
        verify_contribution(contribution, self.public_key, self.roster, self.round_id, self.layout.n_ciphertexts)
        if contribution.sender in self._senders:
            raise ContributionRejected(
                f"sender {contribution.sender[:16]} already contributed to round {self.round_id!r} (replay)"
            )
        if len(self.contributions) >= self.layout.max_participants:
            raise ContributionRejected(
                f"round {self.round_id!r} is full: the layout has headroom for "
                f"{self.layout.max_participants} contributions"
            )
        if any(ct in self._ciphertexts for ct in contribution.ciphertexts):
            raise ContributionRejected(
                f"contribution {contribution.digest[:16]} copies a ciphertext already in the round"
            )
        n2 = self.public_key.nsquare
        if self.product is None:
            self.product = list(contribution.ciphertexts)
        else:
            self.product = [mulmod(a, b, n2) for a, b in zip(self.product, contribution.ciphertexts, strict=True)]
        self.contributions.append(contribution)
        self._senders.add(contribution.sender)
        self._ciphertexts.update(contribution.ciphertexts)

    def result(self) -> AggregateCiphertext:
        """The aggregate so far (raises ``ContributionRejected`` if nothing was accepted)."""
        if self.product is None:
            raise ContributionRejected(f"round {self.round_id!r}: no contribution accepted")
        return AggregateCiphertext(
            self.round_id,
            self.public_key.key_id,
            tuple(c.digest for c in self.contributions),
            tuple(self.product),
        )


def aggregate(
    contributions: Iterable[SignedContribution],
    *,
    public_key: SplitPublicKey,
    layout: PackingLayout,
    roster: Collection[str],
    round_id: str,
) -> AggregateCiphertext:
    """Verify and homomorphically sum contributions (all-or-nothing; see :class:`RoundAccumulator`).

    Raises
    ------
    ContributionRejected
        On the first contribution that fails a check.
    """
    acc = RoundAccumulator(round_id, public_key, layout, frozenset(roster))
    for c in contributions:
        acc.accept(c)
    return acc.result()
