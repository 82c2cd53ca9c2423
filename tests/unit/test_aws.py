"""Every AWS client is built by gatekey.aws, with a budget that fits its function's timeout."""

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from gatekey import aws, wiring
from gatekey.aws import cfn_response
from gatekey.errors import ConcurrentModification, DependencyError
from gatekey.token_resource import RESERVE_SECONDS
from support.constants import ROOT

FUNCTIONS = ROOT / "functions"
BUDGETS = ("AUTHORIZER", "BOOKKEEPING", "API", "CONTROL_PLANE", "ROTATION", "LIFECYCLE")
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
    # The admin API: a consistent read, then one transaction; a metered token's change also
    # moves its API key to another plan (2 calls) and disables it (1), and undoes all three
    # when the transaction fails (gatekey.admin).
    "admin": [
        [("dynamodb", aws.API), ("dynamodb", aws.API)],
        [
            ("dynamodb", aws.API),
            *[("apigateway", aws.CONTROL_PLANE)] * 3,
            ("dynamodb", aws.API),
            *[("apigateway", aws.CONTROL_PLANE)] * 3,
        ],
    ],
    # The service-token provider's Create at a cold start, failing at its last step: the
    # pepper; the token read and its trail; the delivery secret's tag; the token written; the
    # secret staged, then promoted (a read and a label move), which fails; the token read and
    # removed again. Its answer comes on top (test_the_providers_reserve_covers_undo_and_answer).
    "service_token_provider": [
        [
            ("secretsmanager", aws.API),
            *[("dynamodb", aws.API)] * 2,
            ("secretsmanager", aws.API),
            ("dynamodb", aws.API),
            *[("secretsmanager", aws.API)] * 3,
            *[("dynamodb", aws.API)] * 2,
        ]
    ],
    # Rotation: the ring, CreateKey, GetPublicKey, the ring write, a deletion.
    "signing_keys": [[*[("dynamodb", aws.ROTATION)] * 2, *[("kms", aws.ROTATION)] * 3]],
}


# Where each function's clients are built: its builder in gatekey.wiring.
BUILDERS: dict[str, Callable[..., Any]] = {
    "authorizer": wiring.authorizer,
    "token": wiring.token,
    "admin": wiring.admin,
    "signing_keys": wiring.signing_key_rotation,
    "lifecycle": wiring.lifecycle,
    "service_token_provider": wiring.service_token_resource,
}


def client_source(function: str) -> str:
    """The source that chooses the function's budgets: the wiring builder its handler calls."""
    build = BUILDERS[function]
    handler = (FUNCTIONS / function / "app.py").read_text()
    assert f"wiring.{build.__name__}(" in handler, f"{function} does not call its builder"
    return inspect.getsource(build)


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
    source = client_source(function)
    for _, budget in {call for chain in CHAINS[function] for call in chain}:
        name = next(n for n in BUDGETS if getattr(aws, n) == budget)
        assert f"aws.{name}" in source, f"{function}'s builder does not use aws.{name}"
    timeout = lambda_timeout(template, function)
    for chain in CHAINS[function]:
        worst = sum(budget.worst_case(service) for service, budget in chain)
        assert worst <= WELL_INSIDE * timeout, (function, worst, timeout)


def test_the_providers_reserve_covers_undo_and_answer() -> None:
    # Before each write the provider keeps RESERVE_SECONDS back: enough, at their worst, to
    # read and delete the token it made and to answer CloudFormation.
    undo = 2 * aws.API.worst_case("dynamodb")
    assert undo + cfn_response.worst_case() <= RESERVE_SECONDS


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
    assert handlers - set(BUILDERS) == {"demo"}


def test_handlers_build_no_client_themselves() -> None:
    # Budgets are chosen in gatekey.wiring only: a client built in a handler would escape them.
    for handler in FUNCTIONS.glob("*/app.py"):
        assert "aws.client(" not in handler.read_text(), handler.parent.name


def _failed(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "quoted request value"}}, "Op")


def test_a_failed_call_is_a_dependency_error_naming_what_and_the_code_never_the_message() -> None:
    for failure, code in [
        (_failed("ThrottlingException"), "ThrottlingException"),
        (EndpointConnectionError(endpoint_url="https://kms.invalid"), "EndpointConnectionError"),
    ]:
        with pytest.raises(DependencyError) as raised, aws.translated("KMS Sign failed"):
            raise failure
        assert raised.value.message == f"KMS Sign failed: {code}"
        assert raised.value.__cause__ is failure


def test_a_code_that_means_something_raises_its_error_or_counts_as_done() -> None:
    def changed(code: str) -> ConcurrentModification:
        return ConcurrentModification(f"changed ({code})")

    meaning = {"ConditionalCheckFailedException": changed, "KMSInvalidStateException": done}
    changed_first = pytest.raises(ConcurrentModification, match=r"changed \(ConditionalCheck")
    with changed_first, aws.translated("write", meaning=meaning):
        raise _failed("ConditionalCheckFailedException")
    with aws.translated("delete", meaning=meaning):  # the goal is reached: nothing raised
        raise _failed("KMSInvalidStateException")
    failed = pytest.raises(DependencyError, match="delete: AccessDeniedException")
    with failed, aws.translated("delete", meaning=meaning):
        raise _failed("AccessDeniedException")


def done(_: str) -> None:
    return None


def test_only_the_aws_package_imports_botocore() -> None:
    # Type stubs (mypy_boto3_*, under TYPE_CHECKING) are not imports of botocore.
    imports = re.compile(r"^\s*(from|import) (boto3|botocore)\b", re.MULTILINE)
    layer = ROOT / "layers/gatekey/gatekey"
    for path in [*layer.rglob("*.py"), *FUNCTIONS.glob("*/app.py")]:
        name = path.relative_to(ROOT).as_posix().removeprefix("layers/gatekey/gatekey/")
        if name.startswith("aws/"):
            continue
        assert not imports.search(path.read_text()), name


def test_the_core_imports_no_adapter() -> None:
    # Adapters implement the core's ports and import the core; only the wiring, which builds
    # each function, imports both.
    imports = re.compile(
        r"^\s*(from gatekey\.aws\b|from gatekey import aws\b|import gatekey\.aws)", re.M
    )
    layer = ROOT / "layers/gatekey/gatekey"
    core = [
        p
        for p in layer.rglob("*.py")
        if not p.relative_to(layer).as_posix().startswith("aws/") and p.name != "wiring.py"
    ]
    assert len(core) > 20
    assert [p.name for p in core if imports.search(p.read_text())] == []
