"""Access tokens revoked before their `exp` (RFC 7009), as a service token's item holds them.

Each revoked token is kept as its `jti` and `exp` until it has expired (then it is pruned at
the next write), at most MAX_REVOKED_ACCESS_TOKENS at a time, so the item the authorizer
already reads into its status cache answers "is this access token revoked?" with no read of its
own. A revocation that finds the list full (after pruning) does not drop an entry, which would
bring a revoked token back, nor refuse, which would leave a leaked token working: it moves the
watermark `not_before` to now instead, which revokes every access token of the client issued
until now (those in the list among them), and empties the list. The client's next token works.

Pure values: the store writes them conditionally on `version` (store/base.py,
`save_revocations`), so of two concurrent revocations neither is lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

MAX_REVOKED_ACCESS_TOKENS: Final = 100
# What a verifier allows past `exp` (gatekey.access_tokens.DEFAULT_LEEWAY; a test holds them
# equal): an entry is kept until no verifier accepts its token.
EXPIRY_LEEWAY: Final = 30
# Gatekey's jti is secrets.token_urlsafe(16), 22 characters; any URL-safe id is accepted.
JTI: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class AccessTokenRevocations:
    """A service token's revoked access tokens.

    `ids`: (jti, exp) of each revoked token not yet expired when last written, by exp. `not_before`:
    access tokens issued at or before this second are revoked (0: none). `version`: of this
    value as stored, the lock of its conditional write (0: never written)."""

    ids: tuple[tuple[str, int], ...] = ()
    not_before: int = 0
    version: int = 0
    _jtis: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Soonest to expire first, so every copy, from either store, compares alike.
        object.__setattr__(self, "ids", tuple(sorted(self.ids, key=lambda e: (e[1], e[0]))))
        object.__setattr__(self, "_jtis", frozenset(jti for jti, _ in self.ids))

    def revoked(self, jti: object, issued_at: int) -> bool:
        """Whether the access token `jti`, issued at `issued_at`, is revoked."""
        return issued_at <= self.not_before or jti in self._jtis

    def with_revoked(
        self, jti: str, exp: int, issued_at: int, now: int
    ) -> AccessTokenRevocations | None:
        """This value with the access token `jti` revoked, at the next version; None when
        nothing needs writing (already revoked, or already expired)."""
        if self.revoked(jti, issued_at) or exp + EXPIRY_LEEWAY <= now:
            return None
        kept = tuple((j, e) for j, e in self.ids if e + EXPIRY_LEEWAY > now)
        if len(kept) < MAX_REVOKED_ACCESS_TOKENS:
            return AccessTokenRevocations((*kept, (jti, exp)), self.not_before, self.version + 1)
        # Every listed token was issued before it was revoked, so before now; `issued_at` too,
        # unless the clock that issued it runs ahead of this one.
        watermark = max(now, issued_at, self.not_before)
        return AccessTokenRevocations((), watermark, self.version + 1)

    def at_watermark(self, previous: AccessTokenRevocations) -> bool:
        """Whether this value, written over `previous`, moved the watermark."""
        return self.not_before != previous.not_before


NO_REVOCATIONS: Final = AccessTokenRevocations()
