"""Membership certificates: USCC check characters (GB 32100-2015, GB 11714), signing, every refusal reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keys.identity import generate_identity, public_key_b64
from protocols import certificates as c
from protocols.canonical import Kind, encode

AUTHORITY = generate_identity()
AUTHORITY_PUB = public_key_b64(AUTHORITY)
FIRM = generate_identity()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# Codes published by the firms themselves (business licences, annual reports), both check characters valid.
PUBLISHED_USCC = [
    "91350100M000100Y43",  # the example of GB 32100-2015 practice guides (Fuzhou)
    "91330100716105852F",  # Alibaba (China) Co., Ltd.
    "91440300708461136T",  # Shenzhen Tencent Computer Systems Co., Ltd.
    "914403001922038216",  # Huawei Technologies Co., Ltd.
    "91110000802100433B",  # Beijing Baidu Netcom Science and Technology Co., Ltd.
    "91310000MA1FL1MMXL",  # Tesla (Shanghai) Co., Ltd.
]


def cert(**overrides: object) -> c.MemberCertificate:
    args: dict[str, object] = {
        "identity_public_key": public_key_b64(FIRM), "uscc": PUBLISHED_USCC[0], "legal_name_zh": "示例铝业有限公司",
        "legal_name_en": "Example Aluminium Co., Ltd.", "issued_at": NOW - timedelta(days=1),
        "expires_at": NOW + timedelta(days=365),
    }
    args.update(overrides)
    return c.issue_certificate(AUTHORITY, **args)  # type: ignore[arg-type]  # keyword arguments built above


@pytest.mark.parametrize("code", PUBLISHED_USCC)
def test_published_codes_validate(code: str) -> None:
    assert c.validate_uscc(code) == code
    assert c.uscc_check_character(code[:17]) == code[17]
    assert c.organisation_code_check(code[8:16]) == code[16]


@pytest.mark.parametrize("code", PUBLISHED_USCC)
def test_every_single_character_change_of_the_check_is_refused(code: str) -> None:
    for ch in c.USCC_CHARSET:
        if ch != code[17]:
            with pytest.raises(c.USCCError, match="check character"):
                c.validate_uscc(code[:17] + ch)


@pytest.mark.parametrize(("code", "where"), [
    ("91350100M000100Y4", "17 characters"),
    ("91350100M000100Y433", "19 characters"),
    ("91350100M000100I43", "not in the code's character set"),
    ("91350100m000100Y43", "not in the code's character set"),
    ("Z1350100M000100Y43", "not in the code's character set"),
    ("B1350100M000100Y43", "no registration authority"),
    ("9199010AM000100Y43", "administrative division"),
    ("91350100M000100Y53", "organisation code"),
    ("91350100M000100Y44", "GB 32100-2015 gives '3'"),
    ("91350100M000200Y43", "organisation code"),
])
def test_malformed_codes_are_refused_with_the_position(code: str, where: str) -> None:
    with pytest.raises(c.USCCError, match=where):
        c.validate_uscc(code)


def test_transposed_digits_are_caught() -> None:
    code = PUBLISHED_USCC[2]
    swapped = code[:10] + code[11] + code[10] + code[12:]
    assert swapped != code
    with pytest.raises(c.USCCError):
        c.validate_uscc(swapped)


def test_certificate_signature_covers_its_canonical_body() -> None:
    issued = cert()
    assert c.verify_certificate(issued, AUTHORITY_PUB, now=NOW, identity_public_key=public_key_b64(FIRM)) == issued
    assert c.certificate_message(issued.body()) == encode(Kind.MEMBER_CERTIFICATE, issued.body())
    again = c.MemberCertificate.model_validate_json(issued.model_dump_json())
    assert c.verify_certificate(again, AUTHORITY_PUB, now=NOW) == issued


def test_issuing_refuses_a_wrong_check_character() -> None:
    with pytest.raises(c.USCCError):
        cert(uscc="91350100M000100Y44")


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda d: {**d, "legal_name_en": "Someone Else Ltd."}, c.SIGNATURE),
    (lambda d: {**d, "identity_public_key": public_key_b64(generate_identity())}, c.SIGNATURE),
    (lambda d: {**d, "expires_at": "2099-01-01T00:00:00Z"}, c.SIGNATURE),
    (lambda d: {**d, "uscc": "91350100M000100Y44"}, c.MALFORMED),
    (lambda d: {**d, "authority_key_id": "0" * 16}, c.WRONG_AUTHORITY),
    (lambda d: {k: v for k, v in d.items() if k != "signature"}, c.MALFORMED),
])
def test_tampered_certificates_are_refused(mutate: object, reason: str) -> None:
    doc = mutate(cert().model_dump(mode="json"))  # type: ignore[operator]  # the parametrised lambdas
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_certificate(doc, AUTHORITY_PUB, now=NOW)
    assert exc.value.reason == reason


def test_a_certificate_signed_by_another_key_is_refused() -> None:
    forged = c.issue_certificate(generate_identity(), public_key_b64(FIRM), PUBLISHED_USCC[0], "甲", "A",
                                 issued_at=NOW, expires_at=NOW + timedelta(days=1))
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_certificate(forged, AUTHORITY_PUB, now=NOW)
    assert exc.value.reason == c.WRONG_AUTHORITY
    # ... and naming the pinned authority's key id does not help: the signature is checked
    relabelled = forged.model_copy(update={"authority_key_id": cert().authority_key_id})
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_certificate(relabelled, AUTHORITY_PUB, now=NOW)
    assert exc.value.reason == c.SIGNATURE


def test_validity_window_and_key_binding() -> None:
    issued = cert()
    for when, reason in ((NOW - timedelta(days=2), c.NOT_YET_VALID), (NOW + timedelta(days=366), c.EXPIRED)):
        with pytest.raises(c.CertificateRejected) as exc:
            c.verify_certificate(issued, AUTHORITY_PUB, now=when)
        assert exc.value.reason == reason
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_certificate(issued, AUTHORITY_PUB, now=NOW, identity_public_key=public_key_b64(generate_identity()))
    assert exc.value.reason == c.KEY_MISMATCH
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_certificate(None, AUTHORITY_PUB, now=NOW)
    assert exc.value.reason == c.MISSING


def test_revocation_list_is_signed_and_honoured() -> None:
    issued = cert()
    crl = c.sign_revocation_list(AUTHORITY, 3, [issued.serial], issued_at=NOW, next_update=NOW + timedelta(days=7))
    checked = c.verify_revocation_list(crl.model_dump(mode="json"), AUTHORITY_PUB)
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_certificate(issued, AUTHORITY_PUB, checked, now=NOW)
    assert exc.value.reason == c.REVOKED
    emptied = crl.model_copy(update={"revoked": []})
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_revocation_list(emptied, AUTHORITY_PUB)
    assert exc.value.reason == c.SIGNATURE
    other = c.sign_revocation_list(generate_identity(), 4, [], issued_at=NOW, next_update=NOW + timedelta(days=7))
    with pytest.raises(c.CertificateRejected) as exc:
        c.verify_revocation_list(other, AUTHORITY_PUB)
    assert exc.value.reason == c.WRONG_AUTHORITY
    assert crl.is_stale(NOW + timedelta(days=8)) and not crl.is_stale(NOW)


def test_cohort_counts_one_firm_once() -> None:
    second = generate_identity()
    a = cert()
    b = cert(identity_public_key=public_key_b64(second))  # the same firm's second key
    members = {"1": public_key_b64(FIRM), "2": public_key_b64(second)}
    with pytest.raises(c.CertificateRejected) as exc:
        c.check_cohort(members, {"1": a, "2": b}, AUTHORITY_PUB, now=NOW)
    assert exc.value.reason == c.DUPLICATE_CODE
    b = cert(identity_public_key=public_key_b64(second), uscc=PUBLISHED_USCC[1])
    assert set(c.check_cohort(members, {"1": a, "2": b}, AUTHORITY_PUB, now=NOW)) == {"1", "2"}
    with pytest.raises(c.CertificateRejected, match="member 2") as exc:
        c.check_cohort(members, {"1": a}, AUTHORITY_PUB, now=NOW)
    assert exc.value.reason == c.MISSING
