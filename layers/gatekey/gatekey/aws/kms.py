"""KMS: the signer whose private key never leaves KMS, the public keys KMS vouches for, and the
keys signing-key rotation creates and deletes.

`Sign` runs with ``MessageType=RAW`` (KMS hashes the message itself), RS256 for RSA_2048 and
ES256 for ECC_NIST_P256. KMS returns ECDSA signatures in DER; JOSE wants the raw ``r || s``
(RFC 7518 §3.4), so they are converted here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from gatekey.aws.errors import translated
from gatekey.errors import ConfigurationError
from gatekey.keyring import PUBLIC_KEY_TTL
from gatekey.signing import (
    KEY_SPEC_ALGORITHM,
    KMS_RAW_LIMIT,
    Algorithm,
    PublicKey,
    SigningKeySpec,
    der_to_raw_ecdsa,
)

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_kms.literals import SigningAlgorithmSpecType

logger = logging.getLogger(__name__)

KMS_SIGNING_ALGORITHM: Final[Mapping[Algorithm, SigningAlgorithmSpecType]] = {
    Algorithm.RS256: "RSASSA_PKCS1_V1_5_SHA_256",
    Algorithm.ES256: "ECDSA_SHA_256",
}
# Tag on every key Gatekey creates; the IAM policies of the token and rotation functions are
# scoped to it, so they cannot touch any other key in the account.
KEY_TAG: Final = "gatekey-signing-key"
DELETION_WINDOW_DAYS: Final = 30  # KMS's longest: time to notice a mistake and cancel
# GetPublicKey errors that say the key is not one Gatekey may use (absent, another account's
# or untagged, disabled, pending deletion), as opposed to KMS failing.
_UNUSABLE_KEY_ERRORS: Final = frozenset(
    {
        "AccessDeniedException",
        "NotFoundException",
        "InvalidArnException",
        "ValidationException",
        "DisabledException",
        "KMSInvalidStateException",
    }
)
_KMS_KEY_ARN: Final = re.compile(
    r"(?P<prefix>arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/)[A-Za-z0-9-]{1,64}"
)


def kms_public_key(key_id: str, client: KMSClient) -> PublicKey:
    """Read a KMS signing key's public half and check it is one Gatekey can use: a key it may
    not use is a ConfigurationError, a failure of KMS a DependencyError."""

    def unusable(code: str) -> ConfigurationError:
        return ConfigurationError(f"KMS key {key_id} is unusable: {code}")

    with translated(
        "KMS GetPublicKey failed", meaning=dict.fromkeys(_UNUSABLE_KEY_ERRORS, unusable)
    ):
        response = client.get_public_key(KeyId=key_id)
    if response.get("KeyUsage") != "SIGN_VERIFY":
        raise ConfigurationError(f"KMS key {key_id} is not a SIGN_VERIFY key")
    # KMS returns both names; moto only the older CustomerMasterKeySpec.
    spec = str(response.get("KeySpec") or response.get("CustomerMasterKeySpec"))  # type: ignore[unreachable]
    if spec not in KEY_SPEC_ALGORITHM:
        raise ConfigurationError(f"KMS key spec {spec} is not RSA_2048 or ECC_NIST_P256")
    return PublicKey.from_der(response["PublicKey"], KEY_SPEC_ALGORITHM[spec])


class KmsSigner:
    """One KMS `Sign` call per signature. The public key comes from the key ring, or is read
    once with GetPublicKey when the signer is built without it."""

    def __init__(self, key_id: str, client: KMSClient, public_key: PublicKey | None = None) -> None:
        self.key_id = key_id
        self._client = client
        self.public_key = public_key or kms_public_key(key_id, client)

    def sign(self, signing_input: bytes) -> bytes:
        if len(signing_input) > KMS_RAW_LIMIT:
            raise ValueError("signing input exceeds KMS's 4096-byte RAW limit")
        alg = self.public_key.alg
        with translated("KMS Sign failed"):
            response = self._client.sign(
                KeyId=self.key_id,
                Message=signing_input,
                MessageType="RAW",
                SigningAlgorithm=KMS_SIGNING_ALGORITHM[alg],
            )
        signature = response["Signature"]
        return der_to_raw_ecdsa(signature) if alg is Algorithm.ES256 else signature


class KmsPublicKeys:
    """Public keys read from KMS by key id, each once for the container's life (a KMS key's
    public half never changes). Only key ARNs in the deployment key's account and region are
    asked for. A key KMS says is unusable here (absent, untagged, another account's, disabled)
    is None, and asked again after `retry_after` seconds, since a new key's tag may take
    minutes to authorize GetPublicKey; a failing KMS raises DependencyError."""

    def __init__(
        self,
        client: KMSClient,
        deployment_key_id: str,
        *,
        clock: Callable[[], float],
        retry_after: int = PUBLIC_KEY_TTL,
    ) -> None:
        self._client = client
        arn = _KMS_KEY_ARN.fullmatch(deployment_key_id)
        self._prefix = arn["prefix"] if arn else None
        self._clock = clock
        self._retry_after = retry_after
        self._keys: dict[str, PublicKey] = {}
        self._refused: dict[str, float] = {}  # key id -> when it may be asked again

    def get(self, key_id: str) -> PublicKey | None:
        if key_id in self._keys:
            return self._keys[key_id]
        now = self._clock()
        if now < self._refused.get(key_id, 0):
            return None
        arn = _KMS_KEY_ARN.fullmatch(key_id)
        reason = None
        if arn is None or (self._prefix is not None and arn["prefix"] != self._prefix):
            reason = "not a KMS key ARN of this account and region"
        else:
            try:
                self._keys[key_id] = kms_public_key(key_id, self._client)
                return self._keys[key_id]
            except ConfigurationError as exc:
                reason = exc.message
        logger.warning("KMS key not usable for verification", extra={"reason": reason[:200]})
        if len(self._refused) >= 1_000:  # bounded: a ring holds MAX_RING_KEYS entries
            self._refused.clear()
        self._refused[key_id] = now + self._retry_after
        return None

    def require(self, key_id: str) -> PublicKey:
        """The key, or ConfigurationError (the deployment's own key must be usable)."""
        public = self.get(key_id)
        if public is None:
            raise ConfigurationError(f"KMS key {key_id} is not usable for verification")
        return public


class KmsKeys:
    """The KMS calls of signing-key rotation: read a key's public half, create the next key
    (tagged, so only Gatekey's functions may use it), schedule a retired key's deletion."""

    def __init__(self, client: KMSClient) -> None:
        self._client = client

    def public_key(self, key_id: str) -> PublicKey:
        return kms_public_key(key_id, self._client)

    def create(self, key_spec: SigningKeySpec, stack_tag: str) -> str:
        """A new signing key; its ARN."""
        with translated("KMS CreateKey failed"):
            response = self._client.create_key(
                Description="Gatekey access-token signing key",
                KeySpec=key_spec,
                KeyUsage="SIGN_VERIFY",
                Tags=[{"TagKey": KEY_TAG, "TagValue": stack_tag}],
            )
        return response["KeyMetadata"]["Arn"]

    def schedule_deletion(self, key_id: str) -> None:
        # Already pending deletion (an earlier run got this far): the goal is reached.
        with translated(
            "KMS ScheduleKeyDeletion failed", meaning={"KMSInvalidStateException": _done}
        ):
            # By key id, which KMS accepts like the ARN within the key's own account (and moto
            # accepts only the id here).
            self._client.schedule_key_deletion(
                KeyId=key_id.rsplit("/", 1)[-1], PendingWindowInDays=DELETION_WINDOW_DAYS
            )


def _done(_: str) -> None:
    return None
