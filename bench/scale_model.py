"""The authorizer's reads and writes at a real user's scale, from its own code (docs/scale.md).

Many warm containers share the traffic; each keeps its own status cache, answer cache and
last-seen timer, so how often the table is read depends on how many containers there are. This
drives real `Authorizer` objects (one per container, the code of functions/authorizer, with the
in-memory store standing in for the table so that nothing but the caching is measured) with
clients that each send `--rate` requests per second, every request to a container picked at
random, as Lambda hands requests to idle environments, on a simulated clock. Clients are
independent, so a sample of them gives the per-client figures, scaled to `--clients`.

    PYTHONPATH=layers/gatekey .venv/bin/python bench/scale_model.py [--quick]
"""

from __future__ import annotations

import argparse
import heapq
import random
from dataclasses import dataclass
from typing import Any

from gatekey.authorizer import Authorizer, AuthorizerSettings
from gatekey.credentials import CredentialForm
from gatekey.hashing import Hasher
from gatekey.keyring import PublicKeyCache
from gatekey.model import AuditAction, AuditEvent, new_service_token
from gatekey.store.memory import InMemoryTokenStore

ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/v1/GET/items/42"
STATUS_TTL = 30  # StatusCacheTtlSeconds, the template's default
LAST_SEEN_INTERVAL = 900  # LastSeenIntervalSeconds, the template's default


class CountingStore(InMemoryTokenStore):
    """The in-memory store, counting what would be DynamoDB requests."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.writes = 0
        self.failed_writes = 0

    def get(self, client_id: str, *, consistent: bool = False) -> Any:
        self.reads += 1
        return super().get(client_id, consistent=consistent)

    def record_last_seen(self, client_id: str, now: int, min_interval: int) -> bool:
        written = super().record_last_seen(client_id, now, min_interval)
        self.writes += written
        self.failed_writes += not written  # a condition that fails still costs a write
        return written


@dataclass
class Row:
    containers: int
    reads_per_s: float
    hit_ratio: float
    writes_per_s: float
    failed_writes_per_s: float


def simulate(containers: int, *, clients: int, sample: int, rate: float, seconds: int) -> Row:
    now = [0.0]
    store = CountingStore()
    hasher = Hasher({"p1": b"m" * 64}, "p1")
    settings = AuthorizerSettings(
        accepted=frozenset({CredentialForm.GATEKEY_HEADERS}),
        access_json_header="authorization",
        strict=False,
        issuer="https://issuer.example",
        audience="gatekey",
        status_cache_ttl=STATUS_TTL,
        last_seen_interval=LAST_SEEN_INTERVAL,
        http_api_simple_responses=False,
    )
    fleet = [
        Authorizer(
            store=store,
            hasher=hasher,
            public_keys=PublicKeyCache(dict, ttl=300, refetch_interval=30, clock=lambda: now[0]),
            settings=settings,
            clock=lambda: now[0],
        )
        for _ in range(containers)
    ]
    events = []
    for _ in range(sample):
        token, secret = new_service_token(name="bot", hasher=hasher, now=0)
        store.create(token, AuditEvent(token.client_id, AuditAction.CREATED, "model", 0))
        headers = {"gatekey-client-id": token.client_id, "gatekey-client-secret": secret.reveal()}
        events.append({"type": "REQUEST", "methodArn": ARN, "headers": headers})
    randomness = random.Random(7)  # noqa: S311 - a model, not a secret
    queue = [(randomness.expovariate(rate), i) for i in range(sample)]
    heapq.heapify(queue)
    warm_up = 2 * LAST_SEEN_INTERVAL  # every cache and timer past its first cycle
    requests = reads = writes = failed = 0
    while queue:
        at, client = heapq.heappop(queue)
        if at >= warm_up + seconds:
            continue
        if at >= warm_up and requests == 0:
            reads, writes, failed = store.reads, store.writes, store.failed_writes
        now[0] = at
        assert randomness.choice(fleet).authorize(events[client]).allowed
        if at >= warm_up:
            requests += 1
        heapq.heappush(queue, (at + randomness.expovariate(rate), client))
    scale = clients / sample / seconds
    reads = store.reads - reads
    return Row(
        containers,
        reads * scale,
        1 - reads / requests,
        (store.writes - writes) * scale,
        (store.failed_writes - failed) * scale,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second per client")
    parser.add_argument("--sample", type=int, default=100, help="clients simulated")
    parser.add_argument("--quick", action="store_true", help="a short run (a smoke test)")
    args = parser.parse_args()
    seconds = 300 if args.quick else 1_800
    print(
        f"{args.clients} clients x {args.rate} requests/s = {args.clients * args.rate:,.0f}/s; "
        f"status cache {STATUS_TTL} s, last-seen interval {LAST_SEEN_INTERVAL} s; "
        f"{args.sample} clients simulated for {seconds} s"
    )
    print(f"{'containers':>10} {'GetItem/s':>10} {'hit ratio':>10} {'writes/s':>9} {'failed/s':>9}")
    for containers in (10, 25, 100, 250, 1_000):
        row = simulate(
            containers, clients=args.clients, sample=args.sample, rate=args.rate, seconds=seconds
        )
        print(
            f"{row.containers:>10} {row.reads_per_s:>10,.0f} {row.hit_ratio:>10.1%} "
            f"{row.writes_per_s:>9.1f} {row.failed_writes_per_s:>9.1f}"
        )


if __name__ == "__main__":
    main()
