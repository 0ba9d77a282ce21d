"""Tests of the pure secure-aggregation protocol (protocols.secagg, protocols.secagg_crypto)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Mapping

import gmpy2
import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.secagg import (
    STAGES,
    AggregateResult,
    AuthenticationFailed,
    ClientState,
    EncryptedShare,
    InputOutOfRange,
    KeyAdvertisement,
    MaskedInputReply,
    MaskedInputRequest,
    ProtocolViolation,
    Request,
    RoundParams,
    SecAggAborted,
    SecAggClient,
    SecAggServer,
    ShareKeysRequest,
    Stage,
    UnmaskRequest,
    advertisement_payload,
    encode_input,
    neighbourhoods,
    run_in_process,
    to_signed,
)
from protocols.secagg_crypto import (
    FIELD_PRIME,
    DeterministicRandom,
    VerificationFailed,
    decode_share,
    encode_share,
    prg_uint64,
    reconstruct_secret,
    shares_from_polynomial,
    split_secret,
)

N = 10
D = 1000


def identity(node: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"identity-%d" % node).digest())


def make_round(
    n: int = N, d: int = D, round_id: str = "round-1", **kwargs: int
) -> tuple[RoundParams, dict[int, Ed25519PrivateKey], dict[int, Ed25519PublicKey], dict[int, npt.NDArray[np.int64]]]:
    nodes = [1000 + i for i in range(n)]
    keys = {node: identity(node) for node in nodes}
    roster = {node: key.public_key() for node, key in keys.items()}
    params = RoundParams.create(round_id, nodes, d, **kwargs)
    rng = np.random.default_rng(7)
    bound = 2**params.value_bits
    vectors = {node: rng.integers(-bound, bound, d, dtype=np.int64) for node in nodes}
    return params, keys, roster, vectors


def clients_for(
    params: RoundParams, keys: dict[int, Ed25519PrivateKey], roster: dict[int, Ed25519PublicKey]
) -> dict[int, SecAggClient]:
    return {node: SecAggClient(node, keys[node], roster) for node in params.participants}


def plain_sum(vectors: dict[int, npt.NDArray[np.int64]], nodes: tuple[int, ...]) -> npt.NDArray[np.int64]:
    # Exact sum with Python ints, then checked to fit int64 (the round bound guarantees it).
    exact = [sum(int(vectors[node][k]) for node in nodes) for k in range(len(vectors[nodes[0]]))]
    return np.array(exact, dtype=np.int64)


# --------------------------------------------------------------------------- correctness


def test_sum_of_ten_nodes_equals_plaintext_sum_exactly() -> None:
    params, keys, roster, vectors = make_round()
    result = run_in_process(SecAggServer(params, roster), clients_for(params, keys, roster), vectors)
    assert result.contributors == params.participants
    assert np.array_equal(to_signed(result.total), plain_sum(vectors, params.participants))


def test_sum_uses_the_full_value_range_without_wrapping() -> None:
    params, keys, roster, _ = make_round(d=4)
    top = 2**params.value_bits - 1
    vectors = {node: np.array([top, -(2**params.value_bits), 1, 0], dtype=np.int64) for node in params.participants}
    result = run_in_process(SecAggServer(params, roster), clients_for(params, keys, roster), vectors)
    assert to_signed(result.total).tolist() == [N * top, -N * 2**params.value_bits, N, 0]


@pytest.mark.parametrize("stage", STAGES)
def test_round_completes_when_survivors_reach_threshold(stage: Stage) -> None:
    params, keys, roster, vectors = make_round()
    assert params.threshold == 6
    dropped = params.participants[:4]
    server = SecAggServer(params, roster)
    result = run_in_process(server, clients_for(params, keys, roster), vectors, {stage: dropped})
    # A node dropped at the consistency or unmask stage already contributed its masked input.
    expected = params.participants if stage in (Stage.CONSISTENCY, Stage.UNMASK) else params.participants[4:]
    assert result.contributors == expected
    assert np.array_equal(to_signed(result.total), plain_sum(vectors, expected))
    assert all(result.dropped[node] == stage for node in dropped)


@pytest.mark.parametrize("stage", STAGES)
def test_round_aborts_cleanly_below_threshold(stage: Stage) -> None:
    params, keys, roster, vectors = make_round()
    server = SecAggServer(params, roster)
    with pytest.raises(SecAggAborted) as info:
        run_in_process(server, clients_for(params, keys, roster), vectors, {stage: params.participants[:5]})
    assert (info.value.stage, info.value.survivors, info.value.threshold) == (stage, 5, 6)
    assert server.state.result is None and server.state.masked_sum is None
    with pytest.raises(ProtocolViolation, match="aborted"):
        server.collect_unmask({})


def test_sparse_round_excludes_a_node_whose_neighbourhood_fell_below_threshold() -> None:
    params, keys, roster, vectors = make_round(n=30, d=50, degree=6, threshold=4)
    target = params.participants[0]
    graph = neighbourhoods(params.participants, params.degree, params.graph_seed)
    lost = sorted(graph[target])[:4]  # leaves the target with 3 of the 4 it needs
    server = SecAggServer(params, roster)
    result = run_in_process(server, clients_for(params, keys, roster), vectors, {Stage.ADVERTISE_KEYS: lost})
    assert target not in result.contributors
    assert result.dropped[target] == Stage.ADVERTISE_KEYS
    pruned = set(result.dropped) - set(lost)
    assert target in pruned
    assert all("fewer than 4 live neighbours" in server.state.rejected[node] for node in pruned)
    assert len(result.contributors) == 30 - len(lost) - len(pruned) >= 20
    assert np.array_equal(to_signed(result.total), plain_sum(vectors, result.contributors))


def test_sparse_round_tolerates_dropouts_at_every_stage() -> None:
    params, keys, roster, vectors = make_round(n=40, d=64, degree=8, threshold=5)
    nodes = params.participants
    drops = {
        Stage.ADVERTISE_KEYS: [nodes[0]],
        Stage.SHARE_KEYS: [nodes[10]],
        Stage.MASKED_INPUT: [nodes[20]],
        Stage.UNMASK: [nodes[30]],
    }
    result = run_in_process(SecAggServer(params, roster), clients_for(params, keys, roster), vectors, drops)
    assert set(nodes) - set(result.contributors) == {nodes[0], nodes[10], nodes[20]}
    assert np.array_equal(to_signed(result.total), plain_sum(vectors, result.contributors))


def test_neighbourhood_graph_is_regular_symmetric_and_determined_by_the_round() -> None:
    params = RoundParams.create("g", range(50), 1, degree=7, threshold=5)
    graph = neighbourhoods(params.participants, params.degree, params.graph_seed)
    assert all(len(links) == 7 and node not in links for node, links in graph.items())
    assert all(node in graph[peer] for node, links in graph.items() for peer in links)
    other = RoundParams.create("h", range(50), 1, degree=7, threshold=5)
    assert graph == neighbourhoods(
        params.participants, 7, RoundParams.create("g", range(50), 1, degree=7, threshold=5).graph_seed
    )
    assert graph != neighbourhoods(other.participants, 7, other.graph_seed)


def test_client_state_survives_serialisation_between_stages() -> None:
    params, keys, roster, vectors = make_round(d=16)
    server = SecAggServer(params, roster)
    states: dict[int, bytes] = {}

    def answer(requests: Mapping[int, Request]) -> dict[int, object]:
        replies: dict[int, object] = {}
        for node, req in requests.items():
            state = ClientState.from_json(states[node]) if node in states else None
            client = SecAggClient(node, keys[node], roster, state=state)
            replies[node] = client.handle(req, functools.partial(vectors.__getitem__, node))
            states[node] = client.state.to_json()
        return replies

    r1 = server.collect_advertisements(answer(server.start()))
    r2 = server.collect_shares(answer(r1))
    r3 = server.collect_masked_inputs(answer(r2))
    r4 = server.collect_consistency(answer(r3))
    result = server.collect_unmask(answer(r4))
    assert np.array_equal(to_signed(result.total), plain_sum(vectors, params.participants))
    assert b'"mask_sk": ""' in states[params.participants[0]]  # secrets forgotten after the round


# --------------------------------------------------------------------------- authentication and replay


def _run_to_share_keys(params: RoundParams, keys: dict[int, Ed25519PrivateKey], roster: dict[int, Ed25519PublicKey]):  # type: ignore[no-untyped-def]
    server = SecAggServer(params, roster)
    clients = clients_for(params, keys, roster)
    ads = {node: clients[node].advertise(req) for node, req in server.start().items()}
    return server, clients, server.collect_advertisements(ads)


def test_substituted_public_key_is_rejected_by_the_peer() -> None:
    params, keys, roster, _ = make_round()
    _, clients, requests = _run_to_share_keys(params, keys, roster)
    victim, target = params.participants[0], params.participants[1]
    request = requests[victim]
    # A man-in-the-middle server swaps in its own X25519 keys for the target and signs with its own identity.
    attacker = Ed25519PrivateKey.generate()
    original = next(ad for ad in request.advertisements if ad.sender == target)
    fake_pk = bytes(32 * [9])
    forged = dataclasses.replace(
        original,
        cipher_pk=fake_pk,
        signature=attacker.sign(
            advertisement_payload(params.round_id, target, original.index, fake_pk, original.mask_pk)
        ),
    )
    tampered = dataclasses.replace(
        request, advertisements=tuple(forged if ad.sender == target else ad for ad in request.advertisements)
    )
    with pytest.raises(AuthenticationFailed, match=rf"node {target}.*substituted"):
        clients[victim].share_keys(tampered)


def test_server_excludes_a_node_whose_advertisement_is_not_signed_by_its_enrolled_key() -> None:
    params, keys, roster, vectors = make_round()
    impostor = params.participants[3]
    keys = {**keys, impostor: Ed25519PrivateKey.generate()}  # signs with a key that is not enrolled
    clients = clients_for(params, keys, roster)
    clients[impostor].roster[impostor] = keys[impostor].public_key()  # it believes its own key
    server = SecAggServer(params, roster)
    result = run_in_process(server, clients, vectors)
    assert impostor not in result.contributors
    assert "does not verify" in server.state.rejected[impostor]
    assert np.array_equal(to_signed(result.total), plain_sum(vectors, result.contributors))


def test_advertisements_replayed_from_another_round_are_rejected() -> None:
    params, keys, roster, _ = make_round(round_id="round-1")
    _, _, old_requests = _run_to_share_keys(params, keys, roster)
    params2 = dataclasses.replace(params, round_id="round-2")
    _, clients2, requests2 = _run_to_share_keys(params2, keys, roster)
    node = params.participants[0]
    # Whole message from round 1: rejected on the round id.
    with pytest.raises(ProtocolViolation, match="round 'round-1'.*replay"):
        clients2[node].share_keys(old_requests[node])
    # Round-1 advertisements relabelled into a round-2 message: rejected on the signature binding.
    replayed = dataclasses.replace(
        requests2[node],
        advertisements=tuple(
            dataclasses.replace(ad, round_id="round-2") if ad.sender != node else ad
            for ad in old_requests[node].advertisements
        ),
    )
    with pytest.raises(AuthenticationFailed):
        clients2[node].share_keys(replayed)


def test_message_replayed_at_a_later_stage_is_rejected() -> None:
    params, keys, roster, _ = make_round()
    _, clients, requests = _run_to_share_keys(params, keys, roster)
    node = params.participants[0]
    clients[node].share_keys(requests[node])
    with pytest.raises(ProtocolViolation, match="replayed or out of order"):
        clients[node].share_keys(requests[node])
    wrong_stage = UnmaskRequest(params.round_id, node, {})
    with pytest.raises(ProtocolViolation, match="out of order"):
        clients[node].unmask(wrong_stage)


def test_encrypted_share_rerouted_or_from_another_stage_fails_authentication() -> None:
    params, keys, roster, vectors = make_round()
    server, clients, requests = _run_to_share_keys(params, keys, roster)
    replies = {node: clients[node].share_keys(req) for node, req in requests.items()}
    forwarded = server.collect_shares(replies)
    a, b, c = params.participants[:3]
    request = forwarded[a]
    # The share b sent to a, relabelled as coming from c: the AAD binds the sender.
    share_from_b = next(es for es in request.shares if es.sender == b)
    relabelled = tuple(EncryptedShare(c, a, share_from_b.ciphertext) if es.sender == c else es for es in request.shares)
    with pytest.raises(AuthenticationFailed, match=f"from node {c}"):
        clients[a].mask_input(dataclasses.replace(request, shares=relabelled), vectors[a])


def test_server_rejects_a_reply_replayed_from_another_round() -> None:
    params, keys, roster, vectors = make_round(d=8)
    server, clients, requests = _run_to_share_keys(params, keys, roster)
    forwarded = server.collect_shares({node: clients[node].share_keys(req) for node, req in requests.items()})
    replies: dict[int, object] = {node: clients[node].mask_input(req, vectors[node]) for node, req in forwarded.items()}
    stale = params.participants[2]
    old = replies[stale]
    assert isinstance(old, MaskedInputReply)
    replies[stale] = dataclasses.replace(old, round_id="round-0")
    check_requests = server.collect_masked_inputs(replies)
    assert "replayed" in server.state.rejected[stale]
    assert server.state.dropped[stale] == Stage.MASKED_INPUT
    unmask_requests = server.collect_consistency(
        {node: clients[node].consistency(req) for node, req in check_requests.items()}
    )
    result = server.collect_unmask({node: clients[node].unmask(req) for node, req in unmask_requests.items()})
    assert stale not in result.contributors
    assert np.array_equal(to_signed(result.total), plain_sum(vectors, result.contributors))


def test_client_reveals_one_share_per_peer_and_derives_which_from_the_set_it_signed() -> None:
    params, keys, roster, vectors = make_round(d=8)
    server, clients, requests = _run_to_share_keys(params, keys, roster)
    forwarded = server.collect_shares({node: clients[node].share_keys(req) for node, req in requests.items()})
    late = params.participants[9]
    check = server.collect_masked_inputs(
        {node: clients[node].mask_input(req, vectors[node]) for node, req in forwarded.items() if node != late}
    )
    unmask = server.collect_consistency({node: clients[node].consistency(req) for node, req in check.items()})
    node = params.participants[0]
    reply = clients[node].unmask(unmask[node])
    assert late in reply.key_shares and late not in reply.seed_shares
    assert not set(reply.seed_shares) & set(reply.key_shares)
    assert clients[node].state.revealed[late] == "key" and clients[node].state.revealed[node] == "seed"
    with pytest.raises(ProtocolViolation, match="out of order"):
        clients[node].unmask(unmask[node])


def test_client_rejects_share_keys_request_without_its_own_advertisement() -> None:
    params, keys, roster, _ = make_round()
    _, clients, requests = _run_to_share_keys(params, keys, roster)
    node = params.participants[0]
    others = tuple(ad for ad in requests[node].advertisements if ad.sender != node)
    with pytest.raises(ProtocolViolation, match="own key advertisement"):
        clients[node].share_keys(ShareKeysRequest(params.round_id, node, others))


# --------------------------------------------------------------------------- input bounds


def test_input_outside_the_round_bound_is_refused_not_clipped() -> None:
    params, keys, roster, vectors = make_round(d=4)
    too_big = {**vectors, params.participants[0]: np.array([0, 2**params.value_bits, 0, 0], dtype=np.int64)}
    with pytest.raises(InputOutOfRange, match="position 1"):
        run_in_process(SecAggServer(params, roster), clients_for(params, keys, roster), too_big)
    with pytest.raises(InputOutOfRange, match="dtype float64"):
        encode_input(np.zeros(4), 4, 10)
    with pytest.raises(InputOutOfRange, match="shape"):
        encode_input(np.zeros(3, dtype=np.int64), 4, 10)


def test_round_parameters_that_could_overflow_or_leak_are_refused() -> None:
    with pytest.raises(ValueError, match="value_bits"):
        RoundParams.create("r", range(10), 4, value_bits=60)
    with pytest.raises(ValueError, match="strict majority"):
        RoundParams.create("r", range(10), 4, threshold=5)
    with pytest.raises(ValueError, match="odd"):
        RoundParams.create("r", range(31), 4, degree=5, threshold=4)


# --------------------------------------------------------------------------- known-answer vectors


def test_prg_known_answer_and_agreement_with_aes_ctr_blocks() -> None:
    key = bytes(range(32))
    words = prg_uint64(key, 4)
    assert words.dtype == np.uint64
    assert [hex(int(w)) for w in words] == [
        "0xd09f492ab60090f2",
        "0x80772edd6a9af3a9",
        "0xe59fb94aae765df0",
        "0x3d36c248319bf6a6",
    ]
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = ecb.update(bytes(16) + (1).to_bytes(16, "big")) + ecb.finalize()
    assert np.array_equal(words, np.frombuffer(blocks, dtype="<u8"))


def test_shamir_known_answer_and_reconstruction() -> None:
    assert gmpy2.is_prime(FIELD_PRIME) and FIELD_PRIME - 2**256 == 297
    shares = shares_from_polynomial([42, 7, 3], [1, 2, 3, 4, 5])  # 42 + 7x + 3x^2
    assert shares == {1: 52, 2: 68, 3: 90, 4: 118, 5: 152}
    for subset in ([1, 2, 3], [2, 4, 5], [1, 3, 5]):
        assert reconstruct_secret({x: shares[x] for x in subset}, 3) == (42).to_bytes(32, "big")
    with pytest.raises(VerificationFailed):
        reconstruct_secret({**shares, 5: 153}, 3)
    with pytest.raises(ValueError, match="2 shares given, 3 needed"):
        reconstruct_secret({1: 52, 2: 68}, 3)
    secret = bytes(range(200, 232))
    split = split_secret(secret, 4, list(range(1, 8)), DeterministicRandom("shamir"))
    assert reconstruct_secret({x: split[x] for x in (7, 2, 5, 3)}, 4) == secret
    assert reconstruct_secret({x: split[x] for x in (1, 2, 3)}, 3) != secret
    assert decode_share(encode_share(7, split[7])) == (7, split[7])


def test_seeded_end_to_end_known_answer() -> None:
    nodes = [1, 2, 3, 4, 5]
    keys = {node: identity(node) for node in nodes}
    roster = {node: key.public_key() for node, key in keys.items()}
    params = RoundParams.create("kat-round", nodes, 8)
    assert (params.threshold, params.degree, params.value_bits) == (3, 4, 60)
    vectors = {node: np.arange(8, dtype=np.int64) * node - 3 for node in nodes}
    clients = {
        node: SecAggClient(node, keys[node], roster, randbytes=DeterministicRandom(f"client-{node}")) for node in nodes
    }
    captured: dict[str, npt.NDArray[np.uint64]] = {}
    original = clients[1].mask_input

    def capture(request: MaskedInputRequest, vector: npt.ArrayLike) -> MaskedInputReply:
        reply = original(request, vector)
        captured["masked"] = reply.masked.copy()
        return reply

    clients[1].mask_input = capture  # type: ignore[method-assign]
    result = run_in_process(SecAggServer(params, roster), clients, vectors, {Stage.MASKED_INPUT: [5]})
    assert isinstance(result, AggregateResult)
    assert result.contributors == (1, 2, 3, 4)
    assert to_signed(result.total).tolist() == [-12, -2, 8, 18, 28, 38, 48, 58]
    assert [hex(int(w)) for w in captured["masked"][:3]] == [
        "0x8bdec300096c25",
        "0xbbd263585fd965f2",
        "0x4d074fdeb24e111",
    ]


def test_key_advertisement_signature_covers_round_stage_node_and_keys() -> None:
    key = identity(1)
    payload = advertisement_payload("r", 1, 0, b"a" * 32, b"b" * 32)
    ad = KeyAdvertisement("r", 1, 0, b"a" * 32, b"b" * 32, key.sign(payload))
    for changed in (("r2", 1, 0), ("r", 2, 0), ("r", 1, 1)):
        assert advertisement_payload(*changed, b"a" * 32, b"b" * 32) != payload
    assert advertisement_payload("r", 1, 0, b"b" * 32, b"a" * 32) != payload
    assert b"advertise_keys" in payload and ad.stage == Stage.ADVERTISE_KEYS
