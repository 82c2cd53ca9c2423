"""Dependencies that fail or stall, injected behind real boto3 clients: each function gives up
within its budget (gatekey.aws), fails closed, and counts the failure."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from gatekey import aws
from gatekey.durations import DAY
from gatekey.errors import DependencyError
from support.constants import REGION, TABLE_NAME
from support.events import FakeLambdaContext, load_event, load_handler
from support.harness import AuthorizerHarness, credential_headers

THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
    "message": "Rate of requests exceeds the allowed throughput.",
}


class FaultyDynamoDB:
    """A DynamoDB endpoint on 127.0.0.1 that throttles every request, or never answers."""

    def __init__(self, *, stall: bool) -> None:
        self.requests = 0
        self._release = threading.Event()
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                fault.requests += 1
                if stall:
                    fault._release.wait(30)  # longer than any budget's read timeout
                    return
                body = json.dumps(THROTTLED).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self, budget: aws.CallBudget) -> Any:
        return boto3.client(
            "dynamodb", region_name=REGION, endpoint_url=self.url, config=budget.boto_config()
        )

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["throttled", "stalled"])
def faulty(request: pytest.FixtureRequest) -> Iterator[FaultyDynamoDB]:
    fault = FaultyDynamoDB(stall=request.param == "stalled")
    yield fault
    fault.close()


def test_the_authorizer_gives_up_after_its_budgets_attempts_and_counts_the_failure(
    authorizer: AuthorizerHarness,
    faulty: FaultyDynamoDB,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the table throttles (or never answers) every read of the authorizer
    bot = authorizer.bot()
    authorizer.handler.store._client = faulty.client(aws.AUTHORIZER)
    capsys.readouterr()
    # WHEN a request needs the token's status
    with pytest.raises(Exception, match="DynamoDB request failed") as failed:
        authorizer.call("rest_request", credential_headers("gatekey_headers", bot))
    # THEN it failed closed after exactly the budget's attempts, bounded by its worst case
    # (2.6 s, within the authorizer's 5 s), and the failure was counted for the alarm
    assert type(failed.value).__name__ == "DependencyError"
    assert faulty.requests == aws.AUTHORIZER.attempts
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    assert any(doc.get("AuthorizerFailures") == [1.0] for doc in emitted)


def test_a_ring_that_existed_and_is_gone_fails_closed_everywhere_instead_of_falling_back(
    make_authorizer: Callable[..., AuthorizerHarness],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a deployment whose signing keys have been rotated once (the ring exists) ...
    authorizer = make_authorizer()
    bot = authorizer.bot()
    rotate = load_handler("signing_keys")
    event = load_event("signing-keys-scheduled.json")
    rotate.lambda_handler(event, FakeLambdaContext())
    authorizer.clock[0] += 43 * DAY
    assert rotate.lambda_handler(event, FakeLambdaContext())["added"]
    # ... and then lost its ring item (deleted by hand, or a restore from before it)
    ring_key = {"pk": {"S": "SIGNING_KEYS"}, "sk": {"S": "RING"}}
    authorizer.store.client.delete_item(TableName=TABLE_NAME, Key=ring_key)
    # THEN the rotation fails (and alarms) instead of starting a new ring from the first key
    with warnings.catch_warnings():  # Powertools warns that a failed run emitted no metric
        warnings.simplefilter("ignore")
        with pytest.raises(DependencyError, match="ring is missing"):
            rotate.lambda_handler(event, FakeLambdaContext())
    # AND a verifying container fails closed, counted, instead of trusting the first key alone
    cold = make_authorizer()
    capsys.readouterr()
    with pytest.raises(DependencyError, match="ring is missing"):
        cold.call("rest_request", {"Authorization": f"Bearer {cold.jwt(bot)}"})
    assert "AuthorizerFailures" in capsys.readouterr().out
    # AND the token endpoint cannot start rather than sign with a retired key
    with pytest.raises(DependencyError, match="ring is missing"):
        load_handler("token")


def test_a_ring_written_before_the_marker_gets_it_at_the_next_run(
    make_authorizer: Callable[..., AuthorizerHarness],
) -> None:
    # GIVEN a ring written by a release without the marker (no change due today)
    authorizer = make_authorizer()
    rotate = load_handler("signing_keys")
    event = load_event("signing-keys-scheduled.json")
    rotate.lambda_handler(event, FakeLambdaContext())
    marker = {"pk": {"S": "SIGNING_KEYS"}, "sk": {"S": "RING_WRITTEN"}}
    authorizer.store.client.delete_item(TableName=TABLE_NAME, Key=marker)
    # WHEN the next daily run changes nothing
    assert rotate.lambda_handler(event, FakeLambdaContext())["added"] is None
    # THEN the marker is there: a ring lost from now on fails closed
    assert "Item" in authorizer.store.client.get_item(TableName=TABLE_NAME, Key=marker)
