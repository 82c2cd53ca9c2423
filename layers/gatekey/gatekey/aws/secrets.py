"""Secrets Manager: the pepper that keys secret hashing, and the signing key of the Secrets
Manager signing backend. Each is read once per cold start."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gatekey.aws.errors import translated
from gatekey.errors import ConfigurationError
from gatekey.hashing import Hasher

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from gatekey.signing import LocalKeySigner


def load_hasher(secret_id: str, client: SecretsManagerClient) -> Hasher:
    """Read the pepper key ring, a JSON object (gatekey.hashing shows its shape)."""
    with translated("cannot read the pepper secret"):
        response = client.get_secret_value(SecretId=secret_id)
    try:
        ring = json.loads(response["SecretString"])
    except (KeyError, ValueError) as exc:
        raise ConfigurationError("pepper secret: SecretString must be a JSON object") from exc
    if not isinstance(ring, dict):
        raise ConfigurationError("pepper secret: SecretString must be a JSON object")
    return Hasher.from_key_ring(ring)


def load_local_signer(secret_id: str, client: SecretsManagerClient) -> LocalKeySigner:
    """The signer of a PEM (PKCS#8) RSA-2048 or P-256 private key stored as the secret's
    string."""
    # Imported here: the functions that read only the pepper load no cryptography.
    from gatekey.signing import LocalKeySigner

    with translated("cannot read the signing key secret"):
        pem = client.get_secret_value(SecretId=secret_id)["SecretString"]
    return LocalKeySigner.from_pem(pem)
