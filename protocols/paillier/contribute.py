"""A member's side of a ``paillier`` round: encrypt, sign, and the checks every receiver runs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.identity import public_key_b64, sign
from protocols.paillier._wire import verifies
from protocols.paillier.errors import ContributionRejected, LayoutError
from protocols.paillier.keys import SplitPublicKey
from protocols.paillier.messages import SCREEN_STAGE, SignedContribution, contribution_digest, contribution_signed_bytes
from protocols.paillier.packing import PackingLayout, check_slot_values, pack, slots_packing
from protocols.paillier.proof import PlaintextProof, encrypt_with_randomness, prove_plaintext, verify_plaintext_proof

if TYPE_CHECKING:
    from protocols.disclosure import Stage, StageContext
    from protocols.spec import RoundSpec

__all__ = ["encrypt_contribution", "encrypt_stage", "encrypt_vector", "sign_contribution", "verify_contribution"]


def encrypt_vector(public_key: SplitPublicKey, layout: PackingLayout, ints: Sequence[int]) -> list[int]:
    """Pack and Paillier-encrypt one vector of slot integers (fresh randomness per ciphertext).

    Returns
    -------
    list[int]
        One ciphertext (an integer in ``[1, n²)``) per plaintext of the layout.
    """
    if public_key.bits < layout.key_bits:
        raise LayoutError(
            f"layout was built for a {layout.key_bits}-bit key, the public key has {public_key.bits} bits"
        )
    pk = public_key.paillier
    return [int(pk.raw_encrypt(m)) for m in pack(ints, layout)]



def sign_contribution(
    public_key: SplitPublicKey,
    round_id: str,
    ciphertexts: Sequence[int],
    identity_key: Ed25519PrivateKey,
    proofs: Sequence[PlaintextProof] = (),
    *,
    stage: str = SCREEN_STAGE,
) -> SignedContribution:
    """Wrap already-encrypted ciphertexts (and their plaintext proofs) into a signed contribution.

    Without ``proofs`` every receiver refuses the contribution (see :func:`verify_contribution`);
    :func:`encrypt_contribution` makes both.

    Returns
    -------
    SignedContribution
        With ``sender`` the ``keys.identity.public_key_b64`` of ``identity_key``.
    """
    sender = public_key_b64(identity_key)
    cts = tuple(int(c) for c in ciphertexts)
    digest = contribution_digest(public_key, round_id, sender, cts, stage)
    signature = sign(identity_key, contribution_signed_bytes(round_id, digest, stage))
    return SignedContribution(round_id, public_key.key_id, sender, cts, digest, signature, tuple(proofs), stage)




def encrypt_contribution(
    public_key: SplitPublicKey,
    layout: PackingLayout,
    ints: Sequence[int],
    round_id: str,
    identity_key: Ed25519PrivateKey,
    *,
    stage: str = SCREEN_STAGE,
) -> SignedContribution:
    """Pack, encrypt and sign one firm's slot integers for ``stage`` of ``round_id``.

    Parameters
    ----------
    public_key
        The round's split public key.
    layout
        The round's packing layout (from the round spec).
    ints
        The firm's fixed-point slot integers, ``|ints[i]| ≤ layout.bounds[i]``.
    round_id
        The round this contribution is bound to.
    identity_key
        The firm's Ed25519 identity key; its public key must be on the round's roster.
    stage
        The disclosure stage (``protocols.disclosure.Stage``) these integers are for; bound into
        the digest and the signature, so a contribution counts for that stage only.

    Returns
    -------
    SignedContribution
    """
    if public_key.bits < layout.key_bits:
        raise LayoutError(
            f"layout was built for a {layout.key_bits}-bit key, the public key has {public_key.bits} bits"
        )
    sender = public_key_b64(identity_key)
    plaintexts = pack(ints, layout)
    encrypted = [encrypt_with_randomness(public_key, m) for m in plaintexts]
    proofs = [
        prove_plaintext(public_key, round_id, sender, k, c, m, r)
        for k, ((c, r), m) in enumerate(zip(encrypted, plaintexts, strict=True))
    ]
    return sign_contribution(public_key, round_id, [c for c, _ in encrypted], identity_key, proofs, stage=stage)



def encrypt_stage(
    public_key: SplitPublicKey,
    spec: RoundSpec,
    stage: Stage,
    context: StageContext | None,
    ints: Sequence[int],
    identity_key: Ed25519PrivateKey,
) -> SignedContribution:
    """An honest node's contribution to one disclosure stage: its stage vector checked, packed, encrypted, signed.

    ``ints`` is the firm's vector for the stage (``protocols.disclosure.stage_vector``); every
    value is checked against its slot (:func:`~protocols.paillier.packing.check_slot_values`: no
    negative value in a non-negative slot, none beyond its bound) before anything is encrypted.

    Raises
    ------
    LayoutError
        A value its slot does not accept, or a layout that does not fit the key.
    """
    from protocols.disclosure import stage_layout

    slots = stage_layout(spec, stage, context)
    check_slot_values(slots, ints)
    return encrypt_contribution(
        public_key, slots_packing(spec, slots), list(ints), spec.round_id, identity_key, stage=str(stage)
    )


def verify_contribution(
    contribution: SignedContribution,
    public_key: SplitPublicKey,
    roster: Collection[str],
    round_id: str,
    n_ciphertexts: int | None = None,
    stage: str | None = None,
) -> None:
    """Check one contribution in isolation: round, stage, key, roster, digest, signature, ciphertext range, proofs.

    Parameters
    ----------
    contribution
        The contribution to check.
    public_key
        The round's key.
    roster
        ``keys.identity`` public keys of the members admitted to the round.
    round_id
        The round being aggregated.
    n_ciphertexts
        Expected number of ciphertexts, if known (the layout's).
    stage
        The disclosure stage being collected or decrypted, if the caller checks one.

    Raises
    ------
    ContributionRejected
        With the first failed check named.
    """
    c = contribution
    who = f"contribution {c.digest[:16]} from {c.sender[:16]}"
    if c.round_id != round_id:
        raise ContributionRejected(f"{who}: round_id {c.round_id!r}, expected {round_id!r}")
    if stage is not None and c.stage != stage:
        raise ContributionRejected(f"{who}: it is for stage {c.stage!r}, expected stage {stage!r}")
    if c.key_id != public_key.key_id:
        raise ContributionRejected(f"{who}: key_id {c.key_id[:16]}, expected this round's key {public_key.key_id[:16]}")
    if c.sender not in roster:
        raise ContributionRejected(f"{who}: sender is not on the round's roster")
    if n_ciphertexts is not None and len(c.ciphertexts) != n_ciphertexts:
        raise ContributionRejected(f"{who}: {len(c.ciphertexts)} ciphertexts, the layout has {n_ciphertexts}")
    if not c.ciphertexts:
        raise ContributionRejected(f"{who}: no ciphertexts")
    for k, ct in enumerate(c.ciphertexts):
        if not 0 < ct < public_key.nsquare:
            raise ContributionRejected(f"{who}: ciphertexts[{k}] is outside [1, n²)")
    if contribution_digest(public_key, c.round_id, c.sender, c.ciphertexts, c.stage) != c.digest:
        raise ContributionRejected(f"{who}: digest does not match the ciphertexts and stage")
    if not verifies(c.sender, contribution_signed_bytes(c.round_id, c.digest, c.stage), c.signature):
        raise ContributionRejected(f"{who}: bad signature")
    if len(c.proofs) != len(c.ciphertexts):
        raise ContributionRejected(
            f"{who}: {len(c.proofs)} plaintext proof(s) for {len(c.ciphertexts)} ciphertexts; accepted: one per "
            "ciphertext, so that no member posts a ciphertext derived from another's"
        )
    for k, (ct, proof) in enumerate(zip(c.ciphertexts, c.proofs, strict=True)):
        if not verify_plaintext_proof(public_key, c.round_id, c.sender, k, ct, proof):
            raise ContributionRejected(
                f"{who}: ciphertexts[{k}] has no valid proof that the sender knows its plaintext "
                "(a copied, re-randomised or derived ciphertext)"
            )
