"""What every round operation works with: the round states, the context (store, key, pluggable parts), row helpers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from aggregator.store import RoundRow, Store, utcnow
from keys.identity import Ed25519PrivateKey
from protocols import paillier
from protocols.disclosure import SignedStageContext, Stage
from protocols.roster import SignedRoster
from protocols.spec import RoundSpec, SignedSpec

__all__ = [
    "ABORTED",
    "ACTIVE_STATES",
    "AGGREGATING",
    "COLLECTING",
    "DRAFT",
    "LIBRARY_LEVEL",
    "OPEN",
    "PUBLISHED",
    "ROUND_STATES",
    "SUPPRESSED",
    "TERMINAL_STATES",
    "RosterEntry",
    "RoundContext",
    "RoundState",
    "SecAggRunner",
    "StageRun",
    "StageSum",
    "row_params",
    "row_roster",
    "row_spec",
]

DRAFT: Final = "draft"
OPEN: Final = "open"
COLLECTING: Final = "collecting"
AGGREGATING: Final = "aggregating"
PUBLISHED: Final = "published"
SUPPRESSED: Final = "suppressed"
ABORTED: Final = "aborted"
ROUND_STATES: Final = (DRAFT, OPEN, COLLECTING, AGGREGATING, PUBLISHED, SUPPRESSED, ABORTED)
TERMINAL_STATES: Final = (PUBLISHED, SUPPRESSED, ABORTED)
ACTIVE_STATES: Final = (OPEN, COLLECTING, AGGREGATING)
LIBRARY_LEVEL: Final = "industry"
"""Library level of the factors rounds publish (part of the factor id, see ``protocols.factor``)."""

RoundState = Literal["draft", "open", "collecting", "aggregating", "published", "suppressed", "aborted"]


@dataclass(frozen=True)
class RosterEntry:
    """An approved member as the secure-aggregation runner needs it."""

    fingerprint: str
    identity_public_key: str
    supernode_public_key: str
    flower_node_id: str | None = None
    """The member's SuperLink node id, from the round's signed roster (``None`` without a SuperLink)."""


@dataclass(frozen=True)
class StageRun:
    """One disclosure stage for the secure-aggregation runner to sum (``protocols.disclosure``)."""

    stage: Stage
    length: int
    """Slots of the stage's vector."""
    context: SignedStageContext | None
    """What the nodes compute the stage from, signed by the aggregator (``None`` for ``screen``)."""


@dataclass(frozen=True)
class StageSum:
    """A stage's signed slot sums and whose inputs they cover."""

    summed: Sequence[int]
    contributors: Sequence[str]
    """Identity public keys (base64url) of the members whose inputs were summed."""


SecAggRunner = Callable[[RoundSpec, list[RosterEntry], StageRun], StageSum]
"""``run(spec, roster, stage) -> StageSum``: one masked sum of one stage over the roster's members.

The round calls it once per disclosure stage, in order; a runner that keeps a session across
stages (``aggregator.flower_runner.FlowerSecAggRunner``: one Flower run per round) also has
``end(spec)``, which the round calls once after its last stage, a stop or a failure."""


def _spawn_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="pcf-secagg-round", daemon=True).start()


@dataclass
class RoundContext:
    """What round operations need: the store, the aggregator's key, and the pluggable parts."""

    store: Store
    key: Ed25519PrivateKey
    paillier_public_key: paillier.SplitPublicKey | None = None
    """The custodians' key from the ceremony; required to create ``paillier`` rounds."""
    runner: SecAggRunner | None = None
    flower_roster: bool = False
    """``secagg`` rounds run over a Flower SuperLink: opening one fixes and signs its roster of approved
    members with a registered SuperNode (node id -> identity key), and the runner gets exactly that roster."""
    clock: Callable[[], datetime] = utcnow
    authority_public_key: str | None = None
    """The membership authority's key (``PCF_AGG_AUTHORITY_PUBLIC_KEY``): rosters hold only members whose
    certificate by it is current, and carry those certificates."""
    spawn: Callable[[Callable[[], None]], None] = _spawn_thread
    """How a ``secagg`` run is started off the request (a daemon thread; tests may run inline)."""
    _publish_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def row_spec(row: RoundRow) -> SignedSpec:
    """The round's signed spec as stored."""
    return SignedSpec.model_validate_json(row.signed_spec)


def row_params(row: RoundRow) -> dict[str, Any]:
    """The protocol's parameters stored with the round (Paillier public key, signed roster), or ``{}``."""
    return json.loads(row.params) if row.params else {}


def row_roster(row: RoundRow) -> SignedRoster | None:
    """The signed roster fixed when a ``secagg`` round over Flower opened, if any."""
    doc = row_params(row).get("roster")
    return SignedRoster.model_validate(doc) if doc is not None else None
