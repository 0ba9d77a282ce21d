"""Benchmark: our secure aggregation vs Flower's stock SecAgg+ vs a plain sum, through an in-process Grid (no Ray).

Usage::

    python bench/secagg_bench.py            # n in {10, 50, 100, 200} x d in {1000, 10000}
    python bench/secagg_bench.py --quick    # n in {10, 50} x d in {1000}

Every method runs the same float inputs (uniform in [-4, 4], inside Flower's default clipping
range) in the same process, so times are comparable; they are printed as ratios to the
plain sum measured in the same run. Errors are those of each method's own quantisation:
ours and the plain sum use fixed point with scale 2**32 and refuse values that could wrap;
Flower's SecAgg+ clips to [-8, 8], scales by num_examples / max_weight and quantises
stochastically to 2**22 levels. Relative error is max |estimate - true| / max |true|.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Config, NDArrays, Scalar
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
    SecAggPlusWorkflow,
)
from rich.console import Console
from rich.table import Table

from protocols.flower_apps import (
    InProcessGrid,
    NodeInputs,
    RecordKey,
    handle_secagg_message,
    run_plain_sum,
    run_secagg,
)
from protocols.secagg import RoundParams, encode_input, neighbourhoods, to_signed
from protocols.secagg_crypto import aead_open, aead_seal, derive_key, prg_uint64, x25519_keypair, x25519_shared_secret

FRAC_BITS = 32
LOW, HIGH = -4.0, 4.0


@dataclass
class Measurement:
    seconds: float
    rel_error: float
    abs_error: float


def quantise(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Fixed point with scale 2**FRAC_BITS (round half to even); bounds are checked by the protocol."""
    return np.rint(values * 2.0**FRAC_BITS).astype(np.int64)


def errors(estimate: npt.NDArray[np.float64], truth: npt.NDArray[np.float64]) -> tuple[float, float]:
    diff = float(np.max(np.abs(estimate - truth)))
    return diff / float(np.max(np.abs(truth))), diff


def fixed_point_sum(total: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    return to_signed(total).astype(np.float64) / 2.0**FRAC_BITS


def handle_plain_message(message: Message, context: Context, provider: Callable[[Context, str], NodeInputs]) -> Message:
    """The plain-sum baseline's reply: the vector in the clear (the installed package has no such ClientApp)."""
    cfg = message.content.config_records[RecordKey.CONFIG]
    inputs = provider(context, str(cfg[RecordKey.ROUND_ID]))
    vector = encode_input(inputs.vector(), int(str(cfg[RecordKey.VECTOR_LENGTH])), int(str(cfg[RecordKey.VALUE_BITS])))
    return Message(RecordDict({RecordKey.ARRAYS: ArrayRecord({RecordKey.VECTOR: Array(vector)})}), reply_to=message)


def make_app(handler: Callable[..., Message], action: str, inputs: dict[int, NodeInputs]) -> ClientApp:
    app = ClientApp()

    def provider(context: Context, round_id: str) -> NodeInputs:
        return inputs[context.node_id]

    @app.query(action)
    def _handle(message: Message, context: Context) -> Message:
        return handler(message, context, provider)

    return app


def run_ours(
    nodes: list[int],
    floats: dict[int, npt.NDArray[np.float64]],
    keys: dict[int, Ed25519PrivateKey],
    degree: int | None,
    threshold: int | None,
) -> tuple[float, npt.NDArray[np.float64]]:
    roster = {n: k.public_key() for n, k in keys.items()}
    ints = {n: quantise(v) for n, v in floats.items()}
    inputs = {n: NodeInputs(keys[n], roster, lambda n=n: ints[n]) for n in nodes}  # type: ignore[misc]
    grid = InProcessGrid({n: make_app(handle_secagg_message, "secagg", inputs) for n in nodes})
    d = len(next(iter(floats.values())))
    start = time.perf_counter()
    result = run_secagg(grid, nodes, "bench", d, roster, degree=degree, threshold=threshold)
    elapsed = time.perf_counter() - start
    assert len(result.contributors) == len(nodes)
    return elapsed, fixed_point_sum(result.total)


def run_plain(
    nodes: list[int], floats: dict[int, npt.NDArray[np.float64]], keys: dict[int, Ed25519PrivateKey]
) -> tuple[float, npt.NDArray[np.float64]]:
    ints = {n: quantise(v) for n, v in floats.items()}
    inputs = {n: NodeInputs(keys[n], {}, lambda n=n: ints[n]) for n in nodes}  # type: ignore[misc]
    grid = InProcessGrid({n: make_app(handle_plain_message, "plainsum", inputs) for n in nodes})
    d = len(next(iter(floats.values())))
    start = time.perf_counter()
    result = run_plain_sum(grid, nodes, "bench", d)
    return time.perf_counter() - start, fixed_point_sum(result.total)


class _VectorClient(NumPyClient):
    def __init__(self, vector: npt.NDArray[np.float64]) -> None:
        self.vector = vector

    def get_parameters(self, config: Config) -> NDArrays:
        return [np.zeros_like(self.vector)]

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, dict[str, Scalar]]:
        return [self.vector], 1, {}


def run_flower(nodes: list[int], floats: dict[int, npt.NDArray[np.float64]]) -> tuple[float, npt.NDArray[np.float64]]:
    """Flower 1.41's stock SecAggPlusWorkflow + secaggplus_mod (legacy fit plumbing), 7 shares, threshold 4."""

    def client_fn(context: Context) -> object:
        return _VectorClient(floats[context.node_id]).to_client()

    app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])  # type: ignore[arg-type]
    grid = InProcessGrid({n: app for n in nodes})
    n, d = len(nodes), len(next(iter(floats.values())))
    manager = SimpleClientManager()
    for node in nodes:
        manager.register(GridClientProxy(node, grid, run_id=1))
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n)
    state = RecordDict()
    state[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    state[MAIN_PARAMS_RECORD] = ArrayRecord([np.zeros(d)])
    context = LegacyContext(
        Context(run_id=1, node_id=0, node_config={}, state=state, run_config={}),
        strategy=strategy,
        client_manager=manager,
    )
    workflow = SecAggPlusWorkflow(num_shares=7, reconstruction_threshold=4)
    start = time.perf_counter()
    workflow(grid, context)
    elapsed = time.perf_counter() - start
    mean = context.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()[0]
    return elapsed, np.asarray(mean, dtype=np.float64) * n


def measure(n: int, d: int, rng: np.random.Generator, with_default: bool) -> dict[str, Measurement]:
    nodes = [1000 + i for i in range(n)]
    keys = {node: Ed25519PrivateKey.generate() for node in nodes}
    floats = {node: rng.uniform(LOW, HIGH, d) for node in nodes}
    truth = np.sum([floats[node] for node in nodes], axis=0)
    runs: dict[str, Callable[[], tuple[float, npt.NDArray[np.float64]]]] = {
        "plain": lambda: run_plain(nodes, floats, keys),
        "ours k=6 t=5": lambda: run_ours(nodes, floats, keys, 6, 5),
        "flower secagg+": lambda: run_flower(nodes, floats),
    }
    if with_default:
        runs["ours default k"] = lambda: run_ours(nodes, floats, keys, None, None)
    out = {}
    for name, fn in runs.items():
        seconds, estimate = fn()
        rel, absolute = errors(estimate, truth)
        out[name] = Measurement(seconds, rel, absolute)
    return out


def crypto_floor(n: int, d: int, degree: int, threshold: int) -> float:
    """Seconds of the cryptography our round cannot avoid, timed in this run (``plain`` excluded).

    Per node: two X25519 key pairs, 3k exchanges (share encryption both ways, pairwise masks),
    k AEAD seals and opens, k + 1 PRG expansions of d words, two Ed25519 signatures, and Ed25519
    verifications of its neighbours' k + 1 advertisements and of the consistency signatures of
    its peers' share holders (its two-hop neighbourhood); the server verifies one advertisement
    and one consistency signature per node and expands one self mask per node.
    """
    params = RoundParams.create("floor", range(n), d, degree=degree, threshold=threshold)
    graph = neighbourhoods(params.participants, params.degree, params.graph_seed)
    two_hop = sum(len(set().union(*(graph[j] | {j} for j in graph[i] | {i}))) for i in params.participants)
    k = params.degree
    sk, pk = x25519_keypair()
    identity = Ed25519PrivateKey.generate()
    public, signature = identity.public_key(), identity.sign(b"m" * 120)
    key = derive_key(b"k" * 32, "floor")
    blob = aead_seal(key, b"s" * 82, b"a" * 90)

    def timed(fn: Callable[[], object], count: int) -> float:
        reps = max(20, min(count, 400))
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - start) / reps * count

    return (
        timed(x25519_keypair, 2 * n)
        + timed(lambda: x25519_shared_secret(sk, pk), 3 * k * n)
        + timed(lambda: aead_seal(key, b"s" * 82, b"a" * 90), k * n)
        + timed(lambda: aead_open(key, blob, b"a" * 90), k * n)
        + timed(lambda: prg_uint64(key, d), (k + 2) * n)
        + timed(lambda: identity.sign(b"m" * 120), 2 * n)
        + timed(lambda: public.verify(signature, b"m" * 120), (k + 1) * n + two_hop + 2 * n)
    )


CLIP_DEMO_HIGH = 20000.0


def clipping_demo(rng: np.random.Generator) -> tuple[float, float]:
    """Inputs in [0, 20000] (e.g. kg CO2e per tonne): Flower scales by 1/max_weight, clips at 8, so at 8000; ours is exact."""
    nodes = [1000 + i for i in range(10)]
    keys = {node: Ed25519PrivateKey.generate() for node in nodes}
    floats = {node: rng.uniform(0, CLIP_DEMO_HIGH, 1000) for node in nodes}
    truth = np.sum([floats[node] for node in nodes], axis=0)
    return errors(run_flower(nodes, floats)[1], truth)[0], errors(run_ours(nodes, floats, keys, 6, 4)[1], truth)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n in {10, 50}, d = 1000 only")
    parser.add_argument(
        "--no-default-degree", action="store_true", help="skip our run with the default (larger) neighbourhood"
    )
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.ERROR)
    sizes_n = [10, 50] if args.quick else [10, 50, 100, 200]
    sizes_d = [1000] if args.quick else [1000, 10000]
    rng = np.random.default_rng(2024)
    console = Console(width=200)
    table = Table(
        title="Secure aggregation through an in-process Flower Grid (times in s; ratios vs plain sum of the same run; "
        "floor = plain + the cryptography the protocol cannot avoid, timed in the same run)"
    )
    for column in (
        "n",
        "d",
        "plain s",
        "ours k6 s",
        "flower s",
        "ours/plain",
        "flower/plain",
        "ours/flower",
        "floor/plain",
        "ours/floor",
        "ours default-k s",
        "rel err ours",
        "rel err flower",
        "rel err plain",
    ):
        table.add_column(column, justify="right")
    for n in sizes_n:
        for d in sizes_d:
            m = measure(n, d, rng, not args.no_default_degree)
            plain, ours, flower = m["plain"], m["ours k=6 t=5"], m["flower secagg+"]
            default = m.get("ours default k")
            floor = plain.seconds + crypto_floor(n, d, 6, 5)
            table.add_row(
                str(n),
                str(d),
                f"{plain.seconds:.3f}",
                f"{ours.seconds:.3f}",
                f"{flower.seconds:.3f}",
                f"{ours.seconds / plain.seconds:.1f}",
                f"{flower.seconds / plain.seconds:.1f}",
                f"{ours.seconds / flower.seconds:.2f}",
                f"{floor / plain.seconds:.1f}",
                f"{ours.seconds / floor:.2f}",
                "-" if default is None else f"{default.seconds:.3f}",
                f"{ours.rel_error:.1e}",
                f"{flower.rel_error:.1e}",
                f"{plain.rel_error:.1e}",
            )
            console.print(f"n={n} d={d} done", style="dim")
    console.print(table)
    flower_clip, ours_clip = clipping_demo(rng)
    console.print(
        f"Inputs in [0, {CLIP_DEMO_HIGH:.0f}], n=10, d=1000: relative error flower {flower_clip:.1e} "
        f"(values above 8 * max_weight are clipped without notice), ours {ours_clip:.1e}"
    )


if __name__ == "__main__":
    main()
