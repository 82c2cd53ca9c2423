"""The one error tree of Gatekey.

Every error carries a stable `reason` code that callers map to an HTTP status, an OAuth error or a
Deny in exactly one place each. Messages name what is wrong and never echo a credential.
"""

from __future__ import annotations


class GatekeyError(Exception):
    """Base of every error Gatekey raises on purpose."""

    reason = "gatekey_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- bad input: nothing was read or written ---------------------------------------------------


class ValidationError(GatekeyError):
    """Input that can never be valid. `field` names the offending input."""

    reason = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidDuration(ValidationError):
    reason = "invalid_duration"


class InvalidScope(ValidationError):
    """A requested OAuth scope the service token does not have."""

    reason = "invalid_scope"


class InvalidTarget(ValidationError):
    """A token request's `resource` (RFC 8707) or `audience` that names no API the client may
    reach, or is not an API at all."""

    reason = "invalid_target"


class UnsupportedGrantType(ValidationError):
    reason = "unsupported_grant_type"


class MalformedCredential(ValidationError):
    """A Client ID or Client Secret that fails the format or checksum check (no I/O was done)."""

    reason = "malformed_credential"


# -- authentication: the caller presented something that does not grant access ----------------


class AuthenticationError(GatekeyError):
    reason = "authentication_failed"


class MissingCredentials(AuthenticationError):
    """No credentials in any accepted form: the caller has not tried to authenticate."""

    reason = "missing_credentials"


class InvalidCredentials(AuthenticationError):
    """Well-formed credentials that do not match any active secret."""

    reason = "invalid_credentials"


class SecretRotated(InvalidCredentials):
    """An access token obtained with a secret the service token no longer accepts."""

    reason = "secret_rotated"


# An access token refused for one of these reasons is InvalidCredentials all the same; the
# reason tells metrics and logs why (as aws-jwt-verify's errors do).


class WrongIssuer(InvalidCredentials):
    """An access token whose iss is not this deployment's issuer."""

    reason = "wrong_issuer"


class WrongAudience(InvalidCredentials):
    """An access token whose aud does not name this deployment's audience."""

    reason = "wrong_audience"


class UnknownKey(InvalidCredentials):
    """An access token whose kid names no published signing key: a retired, foreign or
    made-up key."""

    reason = "unknown_key"


class BadSignature(InvalidCredentials):
    """An access token whose signature its key does not verify: forged or altered."""

    reason = "bad_signature"


class NotYetValid(InvalidCredentials):
    """An access token whose nbf or iat is later than now, beyond the leeway."""

    reason = "not_yet_valid"


class AmbiguousCredentials(AuthenticationError):
    """Credentials in more than one place: the answer could depend on a header outside the
    API's authorizer cache key, so none is given."""

    reason = "ambiguous_credentials"


class TokenExpired(AuthenticationError):
    reason = "token_expired"


class TokenDisabled(AuthenticationError):
    reason = "token_disabled"


class TokenRevoked(AuthenticationError):
    reason = "token_revoked"


class AccessTokenRevoked(AuthenticationError):
    """An access token its client (or an admin) revoked before its exp (RFC 7009), or one
    issued before the client's `access_tokens_not_before` watermark. Not InvalidCredentials:
    a revocation is final, so a fresh read of the token could not change the answer."""

    reason = "access_token_revoked"


class ClientNotPermitted(AuthenticationError):
    """An authenticated client asking for what its service token does not permit: to
    introspect without the introspection scope."""

    reason = "client_not_permitted"


# -- bindings (gatekey.bindings): valid credentials, used where the token may not be ----------


class SourceIpRefused(ClientNotPermitted):
    """A token bound to CIDR blocks, used from an address outside them."""

    reason = "source_ip"


class SourceIpUnverifiable(SourceIpRefused):
    """A token bound to CIDR blocks, where the source address cannot be checked safely: a
    TOKEN authorizer's event carries none, and an answer cached under identity sources without
    it would let other addresses in (docs/architecture.md, "Caching")."""

    reason = "source_ip_unverifiable"


class ApiNotAllowed(ClientNotPermitted):
    """A token bound to APIs, used on another API or stage."""

    reason = "api_not_allowed"


class TokenOfAnotherClient(AuthenticationError):
    """A client revoking an access token issued to another client (RFC 7009 §2.1)."""

    reason = "token_of_another_client"


# -- state of stored tokens --------------------------------------------------------------------


class NotFound(GatekeyError):
    reason = "not_found"


class Conflict(GatekeyError):
    """The write would break an invariant of the stored state; nothing was written."""

    reason = "conflict"


class AlreadyExists(Conflict):
    reason = "already_exists"


class ConcurrentModification(Conflict):
    """Optimistic lock lost: someone else changed the item since it was read."""

    reason = "concurrent_modification"


class InvalidTransition(Conflict):
    """A change the token's state forbids, such as enabling a revoked token."""

    reason = "invalid_transition"


# -- the platform ------------------------------------------------------------------------------


class ConfigurationError(GatekeyError):
    """Missing or malformed configuration; raised at cold start."""

    reason = "configuration_error"


class DependencyError(GatekeyError):
    """An AWS dependency (DynamoDB, Secrets Manager, KMS) failed. Callers fail closed."""

    reason = "dependency_unavailable"


class OutOfTime(GatekeyError):
    """Work stopped before its function's timeout, leaving time to undo what it did and say
    so (the CloudFormation provider answers every request before Lambda stops it)."""

    reason = "out_of_time"


class UnreadableItem(DependencyError):
    """The table holds what this release cannot read (e.g. written by a newer one): the
    request fails closed, the lifecycle reports the token and goes on."""

    reason = "unreadable_item"


# -- DPoP (RFC 9449; gatekey.dpop) -------------------------------------------------------------


class InvalidDPoPProof(InvalidCredentials):
    """A DPoP proof that is missing, malformed, or fails a check of RFC 9449 §4.3; or a
    DPoP-bound access token presented without one. The token endpoint answers
    ``invalid_dpop_proof``; the authorizer denies."""

    reason = "invalid_dpop_proof"


class DPoPReplayed(InvalidDPoPProof):
    """A proof whose jti was seen before within its window (§11.1)."""

    reason = "dpop_replayed"


class UseDPoPNonce(InvalidDPoPProof):
    """A proof without a current server nonce where one is required (§8):
    ``use_dpop_nonce``, with a fresh nonce in the DPoP-Nonce header."""

    reason = "use_dpop_nonce"
