"""Protocol 2, ``paillier``: packed Paillier contributions in an asynchronous window, decrypted by split-key custodians.

How a round runs
----------------
1. Key ceremony (once, offline): :func:`generate_split_key` draws a Paillier key (phe, ``n`` of
   ``bits`` bits), computes the decryption exponent ``d = λ·(λ⁻¹ mod n)`` (so ``d ≡ 0 mod λ`` and
   ``d ≡ 1 mod n``) and splits it additively over the integers, ``d = d_1 + … + d_k``: the first
   ``k−1`` shares are uniform of ``|d| + 128`` bits, the last is ``d − Σ others`` (usually negative),
   so any ``k−1`` shares are statistically independent of ``d`` (distance ≤ 2⁻¹²⁸). ``p``, ``q`` and
   ``λ`` only live in local variables of the dealer and are never returned or written; the
   ceremony should run on an offline machine in front of every custodian, which is then wiped.
   Each custodian also receives an Ed25519 key to sign its partial decryptions; the public key
   (:class:`SplitPublicKey`) lists those verification keys.
2. The round spec fixes a :class:`PackingLayout` (per-slot bounds on ``|value|``, maximum number
   of participants, key size). Slot values are the round's fixed-point integers: nothing is
   encrypted with phe's float encoding, so there is no per-ciphertext exponent to leak magnitude.
3. Each firm packs its integers (offset by the bound so they are non-negative) several to a
   plaintext, encrypts (:func:`encrypt_contribution`) and signs the contribution's canonical
   digest bound to the round (``protocols.canonical``, kind ``contribution/v1``).
4. The aggregator (:class:`RoundAccumulator` / :func:`aggregate`) checks each contribution
   against the roster, the round and earlier senders, and multiplies the ciphertexts as they
   arrive; it cannot decrypt anything.
5. A round is four encrypted sums over one cohort, one per disclosure stage
   (``protocols.disclosure``: ``screen`` while the round is open, then ``dominance``, ``values``,
   ``cells``, each from the aggregator's signed stage context, packed by :func:`stage_packing`,
   the stage bound into each contribution's digest and signature). When a stage's contributions
   are in, each custodian reads the transparency log itself and runs
   :func:`decrypt_logged_round` for the stage the log shows the round waiting for (every earlier
   stage logged as ``proceed``; before ``values`` the custodian also combines the dominance stage's
   counts itself, :func:`check_dominance`): the round's signed spec must name its key, the contributions are
   exactly those the log's receipts record for that stage (after ``screen``, from exactly the
   screen's members) (each signed by a member of the round's signed
   roster, one per member, ``round_log``); it re-verifies every signature and plaintext proof
   (``proof``: no ciphertext copied, re-randomised or derived from another's), requires at least
   ``min_participants`` of them, recomputes the product itself, answers once per stage (ledger),
   and only then returns ``c^{d_i} mod n²`` for each product ciphertext, signed.
6. Anyone holding all partials runs :func:`combine`: ``Π c^{d_i} = c^d = 1 + m·n mod n²``, so
   ``m = (x − 1)/n``; the slot sums are unpacked and the offsets removed.

Who must not collude
--------------------
Decryption is n-of-n: all custodians together can decrypt any ciphertext, including a single
firm's contribution, so the custodians (e.g. the association and the national database) must be
independent organisations, and none of them should be the aggregator's operator. The aggregator
together with any strict subset of custodians learns nothing beyond the public key. A custodian
decrypts only every contribution the log records for a round (never a subset the aggregator
picks), refuses fewer than ``min_participants`` distinct roster members (floor
:data:`MIN_PARTICIPANTS_FLOOR`) and answers once per round, which blocks the "decrypt one firm"
and "difference of two subsets" attacks by a dishonest aggregator; the proofs of plaintext
knowledge stop a roster member from posting a ciphertext derived from others' (``c·rⁿ``,
``(c₁c₂)⁻¹·Enc(k)``), which would make a sum of ``min_participants`` reveal one firm. What the
protocol cannot stop: the aggregator colluding with ``min_participants − 1`` roster members (or
admitting sybils to the roster it signs) learns the remaining firm's value from the sum; the
roster (and the membership authority's certificates) is the defence there. There are no range proofs: a malicious member can spoil the aggregate with
out-of-range values (detected by :func:`unpack` when the sum leaves its slot range, not
attributed), though it learns nothing from doing so. Partial decryptions carry no
zero-knowledge proof of correctness; a wrong partial is detected at :func:`combine` (the result
is not ``≡ 1 mod n`` or leaves the slot range) but not attributed to a custodian.

Modules
-------
``keys``         the split public key, key shares and the ceremony that deals them
``packing``      fixed-point slots packed into plaintexts (the layout the round spec fixes)
``messages``     wire models (contribution, decryption request, partial decryption) and their digests
``contribute``   a member encrypts, proves and signs; every receiver verifies
``proof``        the proof of plaintext knowledge each ciphertext carries
``round_log``    the contributions a custodian decrypts, taken from the verified transparency log
``accumulator``  the aggregator multiplies accepted contributions as they arrive
``custodian``    a custodian's partial decryption, and :func:`combine`
``shares``       a key share sealed under its custodian's password (the share-file format)
``errors``       the exception tree (``PaillierError`` under ``protocols.errors.ProtocolError``)

Everything public is re-exported here, so ``from protocols import paillier`` is all a role needs.
"""

from __future__ import annotations

from protocols.paillier._wire import gmpy2_active
from protocols.paillier.accumulator import RoundAccumulator, aggregate
from protocols.paillier.contribute import (
    encrypt_contribution,
    encrypt_stage,
    encrypt_vector,
    sign_contribution,
    verify_contribution,
)
from protocols.paillier.custodian import (
    MIN_PARTICIPANTS_FLOOR,
    check_dominance,
    combine,
    custodian_partial_decrypt,
    decrypt_logged_round,
    ledger_key,
)
from protocols.paillier.errors import (
    CombineFailed,
    ContributionRejected,
    CustodianRefused,
    KeyShareError,
    LayoutError,
    MalformedMessage,
    PaillierError,
    ShareUnlockFailed,
)
from protocols.paillier.keys import (
    MIN_KEY_BITS,
    PROTOCOL,
    KeyShare,
    SplitPublicKey,
    deal_exponent_shares,
    generate_split_key,
)
from protocols.paillier.messages import (
    SCREEN_STAGE,
    STAGE_NAMES,
    AggregateCiphertext,
    DecryptionRequest,
    PartialDecryption,
    SignedContribution,
)
from protocols.paillier.packing import (
    SAFETY_MARGIN_BITS,
    PackingLayout,
    check_slot_values,
    make_layout,
    pack,
    slots_packing,
    spec_layout,
    stage_packing,
    unpack,
)
from protocols.paillier.proof import PlaintextProof, prove_plaintext, verify_plaintext_proof
from protocols.paillier.round_log import LoggedRound, contribution_path, logged_round, parse_log, roster_member_keys
from protocols.paillier.shares import MIN_PASSWORD_LENGTH, SHARE_FORMAT, open_share, seal_share, share_header

__all__ = [
    "MIN_KEY_BITS",
    "MIN_PARTICIPANTS_FLOOR",
    "MIN_PASSWORD_LENGTH",
    "PROTOCOL",
    "SAFETY_MARGIN_BITS",
    "SCREEN_STAGE",
    "SHARE_FORMAT",
    "STAGE_NAMES",
    "AggregateCiphertext",
    "CombineFailed",
    "ContributionRejected",
    "CustodianRefused",
    "DecryptionRequest",
    "KeyShare",
    "KeyShareError",
    "LayoutError",
    "LoggedRound",
    "MalformedMessage",
    "PackingLayout",
    "PaillierError",
    "PartialDecryption",
    "PlaintextProof",
    "RoundAccumulator",
    "ShareUnlockFailed",
    "SignedContribution",
    "SplitPublicKey",
    "aggregate",
    "check_dominance",
    "check_slot_values",
    "combine",
    "contribution_path",
    "custodian_partial_decrypt",
    "deal_exponent_shares",
    "decrypt_logged_round",
    "encrypt_contribution",
    "encrypt_stage",
    "encrypt_vector",
    "generate_split_key",
    "gmpy2_active",
    "ledger_key",
    "logged_round",
    "make_layout",
    "open_share",
    "pack",
    "parse_log",
    "prove_plaintext",
    "roster_member_keys",
    "seal_share",
    "share_header",
    "sign_contribution",
    "slots_packing",
    "spec_layout",
    "stage_packing",
    "unpack",
    "verify_contribution",
    "verify_plaintext_proof",
]
