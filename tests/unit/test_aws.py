"""Every AWS client is built by gatekey.aws, with a budget that fits its function's timeout."""

from typing import Any

import pytest

from gatekey import aws
from support.constants import ROOT

FUNCTIONS = ROOT / "functions"
BUDGETS = ("AUTHORIZER", "BOOKKEEPING", "API", "ROTATION", "LIFECYCLE")
# The calls one invocation may chain, each at its worst, end within this share of the Lambda
# timeout: the rest is for counting and logging the failure, and answering.
WELL_INSIDE = 0.65
# Longest chains of sequential calls per function (service, budget), from the code.
CHAINS: dict[str, list[list[tuple[str, aws.CallBudget]]]] = {
    "authorizer": [
        # A secret whose status is not cached: the read, then the last-seen write.
        [("dynamodb", aws.AUTHORIZER), ("dynamodb", aws.BOOKKEEPING)],
        # An access token on a cold key cache: ring, its key from KMS, status, last seen.
        [
            ("dynamodb", aws.BOOKKEEPING),
            ("kms", aws.BOOKKEEPING),
            ("dynamodb", aws.AUTHORIZER),
            ("dynamodb", aws.BOOKKEEPING),
        ],
    ],
    # The token endpoint: ring reload, a new key from KMS, the token read, one Sign.
    "token": [
        [
            ("dynamodb", aws.BOOKKEEPING),
            ("kms", aws.BOOKKEEPING),
            ("dynamodb", aws.API),
            ("kms", aws.API),
        ]
    ],
    # The admin API: a consistent read, then one transaction.
    "admin": [[("dynamodb", aws.API), ("dynamodb", aws.API)]],
    # Rotation: the ring, CreateKey, GetPublicKey, the ring write, a deletion.
    "signing_keys": [[*[("dynamodb", aws.ROTATION)] * 2, *[("kms", aws.ROTATION)] * 3]],
}


def lambda_timeout(template: dict[str, Any], function: str) -> float:
    default = template["Globals"]["Function"]["Timeout"]
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        code = str(properties.get("CodeUri", "")).rstrip("/")
        if resource["Type"] == "AWS::Serverless::Function" and code == f"functions/{function}":
            return float(properties.get("Timeout", default))
    raise AssertionError(f"no function functions/{function}")


@pytest.mark.parametrize("function", sorted(CHAINS))
def test_each_functions_longest_chain_of_calls_ends_well_inside_its_timeout(
    template: dict[str, Any], function: str
) -> None:
    source = (FUNCTIONS / function / "app.py").read_text()
    for _, budget in {call for chain in CHAINS[function] for call in chain}:
        name = next(n for n in BUDGETS if getattr(aws, n) == budget)
        assert f"aws.{name}" in source, f"{function} does not use aws.{name}"
    timeout = lambda_timeout(template, function)
    for chain in CHAINS[function]:
        worst = sum(budget.worst_case(service) for service, budget in chain)
        assert worst <= WELL_INSIDE * timeout, (function, worst, timeout)


def test_no_client_is_built_anywhere_else() -> None:
    sources = [*FUNCTIONS.glob("*/app.py"), *(ROOT / "layers/gatekey/gatekey").rglob("*.py")]
    clients = ROOT / "layers/gatekey/gatekey/aws/clients.py"
    built = [p for p in sources if "boto3.client(" in p.read_text() and p != clients]
    assert built == []
    assert "boto3.client(" in clients.read_text()


def test_the_worst_case_counts_every_attempt_and_wait() -> None:
    legacy = aws.CallBudget(connect_timeout=0.2, read_timeout=0.4, attempts=2, mode="legacy")
    assert legacy.worst_case("kms") == pytest.approx(2 * 0.6 + 1)
    assert legacy.worst_case("dynamodb") == pytest.approx(2 * 0.6 + 0.05)
    standard = aws.CallBudget(connect_timeout=1, read_timeout=5, attempts=3)
    assert standard.worst_case("kms") == pytest.approx(3 * 6 + (1 + 5) + (2 + 5))
    config = standard.boto_config()
    assert (config.connect_timeout, config.read_timeout) == (1, 5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_functions_are_covered(template: dict[str, Any]) -> None:
    handlers = {p.parent.name for p in FUNCTIONS.glob("*/app.py")}
    # The demo calls nothing; the lifecycle run is bounded by its own budget of work.
    assert handlers - set(CHAINS) == {"demo", "lifecycle"}
