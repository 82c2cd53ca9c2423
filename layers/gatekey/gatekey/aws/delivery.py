"""Secrets Manager as the delivery of an automatic rotation's new secret to its consumer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from gatekey.aws.errors import translated
from gatekey.credentials import ClientSecret
from gatekey.errors import GatekeyError, ValidationError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


# The tag a secret's owner puts on it to let Gatekey write into it (template.yaml's policies).
DELIVERY_TAG: Final = "gatekey-delivery"


class SecretsManagerDelivery:
    """Writes a rotated secret to the consumer's own secret as a new version, then makes it
    AWSCURRENT (the stage a consumer reads)."""

    def __init__(self, client: SecretsManagerClient) -> None:
        self._client = client

    def check(self, secret_arn: str) -> None:
        """A ValidationError unless the secret exists and its owner tagged it for delivery
        (the functions' IAM policies allow writes to such secrets only)."""

        def refused(code: str) -> GatekeyError:
            return ValidationError(
                "DeliverySecretArn",
                f"Gatekey cannot use this secret ({code}): it must exist in Gatekey's account "
                f"and region, tagged {DELIVERY_TAG}=true",
            )

        meaning = dict.fromkeys(("ResourceNotFoundException", "AccessDeniedException"), refused)
        with translated("cannot read the delivery secret", meaning=meaning):
            tags = self._client.describe_secret(SecretId=secret_arn).get("Tags", [])
        if {"Key": DELIVERY_TAG, "Value": "true"} not in tags:
            raise refused("not tagged")

    def stage(self, secret_arn: str, client_id: str, secret: ClientSecret) -> str:
        value = json.dumps({"client_id": client_id, "client_secret": secret.reveal()})
        with translated("cannot deliver the new secret"):
            answer = self._client.put_secret_value(
                SecretId=secret_arn, SecretString=value, VersionStages=["AWSPENDING"]
            )
        return answer["VersionId"]

    def promote(self, secret_arn: str, version_id: str) -> None:
        with translated("cannot make the new secret current"):
            current = self._client.describe_secret(SecretId=secret_arn)["VersionIdsToStages"]
            old = next((v for v, stages in current.items() if "AWSCURRENT" in stages), None)
            if old == version_id:
                return  # made current by an earlier run
            arguments: dict[str, Any] = {"MoveToVersionId": version_id}
            if old is not None:
                arguments["RemoveFromVersionId"] = old
            self._client.update_secret_version_stage(
                SecretId=secret_arn, VersionStage="AWSCURRENT", **arguments
            )

    def withdraw(self, secret_arn: str, version_id: str) -> None:
        """Secrets Manager labels AWSPREVIOUS the version a promotion replaced: back to it."""
        with translated("cannot withdraw the abandoned secret"):
            stages = self._client.describe_secret(SecretId=secret_arn)["VersionIdsToStages"]
            if "AWSCURRENT" not in stages.get(version_id, []):
                return  # never made current, or replaced since
            previous = next((v for v, labels in stages.items() if "AWSPREVIOUS" in labels), None)
            if previous is None:
                return  # nothing was current before it
            self._client.update_secret_version_stage(
                SecretId=secret_arn,
                VersionStage="AWSCURRENT",
                MoveToVersionId=previous,
                RemoveFromVersionId=version_id,
            )
