"""`gatekey curl`: one HTTP request with a service token's credentials, as `cloudflared access
curl` runs curl with an Access token.

Credentials: --credentials-file FILE (JSON {"client_id", "client_secret"}), else
$GATEKEY_CLIENT_ID and $GATEKEY_CLIENT_SECRET, else $CLIENT_ID and $CLIENT_SECRET (the
Quickstart's names). Sent as Gatekey's two headers (default), Access's two headers, HTTP Basic,
or a JWT from the token endpoint, cached on disk until shortly before it expires:
$XDG_CACHE_HOME/gatekey/tokens (default ~/.cache/gatekey/tokens), a directory of mode 0700 and
files of mode 0600, each named by a hash of the Client ID, the token URL and the scopes, and
holding the access token and its expiry, never the secret.

--auth dpop (RFC 9449) asks for a DPoP-bound token and sends a fresh proof with the request. Its
key (P-256, ES256) is --dpop-key FILE (a PEM private key), else one kept beside the cached
token ($XDG_CACHE_HOME/gatekey/dpop, mode 0600, made on first use), or a new one per run with
--no-cache. It needs the `cryptography` package.

The token URL: --token-url, else $GATEKEY_TOKEN_URL, else, with --endpoint or
$GATEKEY_ENDPOINT naming a base URL without a stage (the local stack, which serves every API on
one origin), {endpoint}/oauth2/token, else the TokenEndpointUrl output of the stack (--stack,
$GATEKEY_STACK, 'gatekey').
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final, TextIO

import boto3

from gatekey_cli.api import (
    ENDPOINT_VARIABLE,
    CliError,
    UsageError,
    check_endpoint,
    stack_name,
    stack_outputs,
)

HELP: Final = (
    "run an HTTP request with a service token's credentials (like cloudflared access curl)"
)
AUTH_MODES: Final = ("headers", "access-headers", "basic", "jwt", "dpop")
ENVIRONMENT: Final = (
    ("GATEKEY_CLIENT_ID", "GATEKEY_CLIENT_SECRET"),
    ("CLIENT_ID", "CLIENT_SECRET"),
)
TOKEN_URL_VARIABLE: Final = "GATEKEY_TOKEN_URL"
EXIT_HTTP_ERROR: Final = 22  # as curl --fail
# A cached access token is used until this many seconds before its `exp`.
REFRESH_MARGIN: Final = 60
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the URL to request")
    parser.add_argument(
        "-X", "--request", dest="method", help="method (default GET, or POST with -d)"
    )
    parser.add_argument(
        "-H", "--header", action="append", default=[], dest="headers", help="'Name: value', repeat"
    )
    parser.add_argument(
        "-d", "--data", help="request body; @FILE reads it from FILE, @- from stdin"
    )
    parser.add_argument("-i", "--include", action="store_true", help="print the status and headers")
    parser.add_argument(
        "-f", "--fail", action="store_true", help="exit 22 on an HTTP status of 400 or more"
    )
    parser.add_argument("--max-time", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument(
        "--auth",
        choices=AUTH_MODES,
        default="headers",
        help="Gatekey-Client-Id/-Secret headers (default), CF-Access-Client-Id/-Secret, "
        "HTTP Basic, a JWT from the token endpoint (cached), or a DPoP-bound JWT with a proof",
    )
    parser.add_argument(
        "--dpop-key",
        metavar="FILE",
        help="with --auth dpop: a PEM P-256 private key (default: one kept in the cache)",
    )
    parser.add_argument(
        "--credentials-file",
        metavar="FILE",
        help='JSON {"client_id", "client_secret"} (default: $GATEKEY_CLIENT_ID and '
        "$GATEKEY_CLIENT_SECRET, else $CLIENT_ID and $CLIENT_SECRET)",
    )
    parser.add_argument(
        "--token-url",
        help=f"with --auth jwt: the token endpoint (default: ${TOKEN_URL_VARIABLE}, else "
        "{endpoint}/oauth2/token for a local stack, else the stack's TokenEndpointUrl output)",
    )
    parser.add_argument(
        "--scope", action="append", dest="scopes", default=[], help="with --auth jwt; repeat"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="with --auth jwt: fetch a new token, cache none"
    )
    parser.epilog = (
        "The JWT cache: $XDG_CACHE_HOME/gatekey/tokens (default ~/.cache/gatekey/tokens), "
        "mode 0700, files 0600, keyed by Client ID, token URL and scopes; never the secret."
    )


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    if args.credentials_file:
        try:
            document = json.loads(Path(args.credentials_file).read_text())
            pair = (document["client_id"], document["client_secret"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"--credentials-file {args.credentials_file}: expected JSON "
                f'{{"client_id": ..., "client_secret": ...}} ({type(exc).__name__})'
            ) from None
        if not all(isinstance(v, str) and v for v in pair):
            raise UsageError(f"--credentials-file {args.credentials_file}: empty values")
        return str(pair[0]), str(pair[1])
    for id_name, secret_name in ENVIRONMENT:
        client_id, secret = os.environ.get(id_name), os.environ.get(secret_name)
        if client_id and secret:
            return client_id.strip(), secret.strip()
    raise UsageError(
        "no credentials: set GATEKEY_CLIENT_ID and GATEKEY_CLIENT_SECRET (or CLIENT_ID and "
        'CLIENT_SECRET), or pass --credentials-file FILE (JSON {"client_id", "client_secret"})'
    )


def _check_url(url: str, what: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} needs http:// or https:// and a host: {url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise UsageError(
            f"refusing to send credentials over http:// to {parts.hostname}: use https:// "
            "(http:// only for 127.0.0.1, localhost, [::1])"
        )
    return parts


def token_url(args: argparse.Namespace, session: Callable[[], boto3.Session]) -> str:
    url = args.token_url or os.environ.get(TOKEN_URL_VARIABLE)
    if url:
        return url
    endpoint = args.endpoint or (os.environ.get(ENDPOINT_VARIABLE) if args.stack is None else None)
    if endpoint:
        base = check_endpoint(endpoint)
        if not urllib.parse.urlsplit(base).path:
            return base + "/oauth2/token"
        raise UsageError(
            "--auth jwt needs the token endpoint: pass --token-url (the stack's "
            "TokenEndpointUrl output) or --stack NAME"
        )
    name = stack_name(args.stack)
    outputs = stack_outputs(session(), name)
    if "TokenEndpointUrl" not in outputs:
        raise CliError(f"stack {name!r} has no TokenEndpointUrl output: pass --token-url")
    return outputs["TokenEndpointUrl"]


def cache_path(client_id: str, url: str, scopes: list[str]) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = json.dumps([client_id, url, sorted(scopes)]).encode()
    return Path(root) / "gatekey" / "tokens" / f"{hashlib.sha256(key).hexdigest()}.json"


def _cached(path: Path) -> str | None:
    try:
        if path.stat().st_mode & 0o077:  # readable by others: not ours to trust, nor to keep
            path.unlink()
            return None
        entry = json.loads(path.read_text())
        if float(entry["expires_at"]) - REFRESH_MARGIN > time.time():
            return str(entry["access_token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def _store(path: Path, access_token: str, expires_in: float) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"access_token": access_token, "expires_at": time.time() + expires_in}, file)
    os.replace(temporary, path)


def fetch_token(
    client_id: str,
    secret: str,
    url: str,
    scopes: list[str],
    timeout: float,
    dpop: DPoPSigner | None = None,
) -> tuple[str, float]:
    """The client_credentials grant with client_secret_basic; (access token, expires_in).
    With `dpop`, a proof asks for a DPoP-bound token (and a nonce asked for is sent once)."""
    if dpop is not None:
        try:
            return _fetch_token(client_id, secret, url, scopes, timeout, dpop)
        except _NonceWanted as wanted:
            dpop.nonce = wanted.nonce
    return _fetch_token(client_id, secret, url, scopes, timeout, dpop)


class _NonceWanted(Exception):
    def __init__(self, nonce: str) -> None:
        self.nonce = nonce


def _fetch_token(
    client_id: str,
    secret: str,
    url: str,
    scopes: list[str],
    timeout: float,
    dpop: DPoPSigner | None,
) -> tuple[str, float]:
    _check_url(url, "the token URL")
    pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    form = {"grant_type": "client_credentials"} | ({"scope": " ".join(scopes)} if scopes else {})
    request = urllib.request.Request(  # noqa: S310 - checked above: http(s) only
        url,
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
        headers={
            "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        | ({} if dpop is None else {"DPoP": dpop.proof("POST", url)}),
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = json.loads(response.read())
        if dpop is not None and body.get("token_type") != "DPoP":
            raise CliError(f"token endpoint {url} answered a {body.get('token_type')} token")
        return str(body["access_token"]), float(body.get("expires_in", 0))
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
            nonce = exc.headers.get("DPoP-Nonce")
            wanted = dpop is not None and error.get("error") == "use_dpop_nonce"
            if wanted and nonce and dpop is not None and dpop.nonce != nonce:
                raise _NonceWanted(nonce) from None
            detail = f"{error.get('error')}: {error.get('error_description', '')}".rstrip(": ")
        except ValueError:
            detail = "no JSON error"
        raise CliError(f"token endpoint {url} refused (HTTP {exc.code}): {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise CliError(
            f"cannot reach token endpoint {url}: {getattr(exc, 'reason', exc)}"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise CliError(f"token endpoint {url} answered without an access_token") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is printed, not followed: credentials never travel to another origin."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirect)


class DPoPSigner:
    """A P-256 key and the proofs it signs (RFC 9449 §4.2), on `cryptography`."""

    def __init__(self, pem: bytes | None) -> None:
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec
        except ImportError:
            raise UsageError("--auth dpop needs the cryptography package") from None
        if pem is None:
            self._key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise UsageError("--dpop-key must hold a P-256 private key (PEM)")
            self._key = key
        numbers = self._key.public_key().public_numbers()
        self.jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }
        self.nonce: str | None = None

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        parts = urllib.parse.urlsplit(url)
        claims: dict[str, Any] = {
            "jti": base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(),
            "htm": method.upper(),
            "htu": urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = _b64url(hashlib.sha256(access_token.encode()).digest())
        if self.nonce is not None:
            claims["nonce"] = self.nonce
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        signing_input = ".".join(
            _b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims)
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def dpop_signer(args: argparse.Namespace, token_path: Path) -> DPoPSigner:
    """--dpop-key's key; else the one kept beside the cached token (made on first use, 0600),
    so that the cached token, bound to it, stays usable; with --no-cache, a new one."""
    if args.dpop_key:
        try:
            return DPoPSigner(Path(args.dpop_key).read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--dpop-key {args.dpop_key}: {type(exc).__name__}") from None
    if args.no_cache:
        return DPoPSigner(None)
    path = token_path.parent.parent / "dpop" / f"{token_path.stem}.pem"
    with contextlib.suppress(OSError, ValueError):
        if not path.stat().st_mode & 0o077:
            return DPoPSigner(path.read_bytes())
    signer = DPoPSigner(None)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(signer.pem())
    return signer


def _body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            raise UsageError(f"-d {data}: {exc.strerror}") from None
    return data.encode()


def _send(
    args: argparse.Namespace, body: bytes | None, auth: dict[str, str]
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    headers: dict[str, str] = {}
    for header in args.headers:
        name, separator, value = header.partition(":")
        if not separator or not name.strip():
            raise UsageError(f"-H {header!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    headers |= auth
    if body is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    method = args.method or ("POST" if body is not None else "GET")
    request = urllib.request.Request(  # noqa: S310 - checked: http(s) only
        args.url, data=body, method=method.upper(), headers=headers
    )
    try:
        with _OPENER.open(request, timeout=args.max_time) as response:
            return response.status, response.reason, list(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.reason), list(exc.headers.items()), exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise CliError(f"cannot reach {args.url}: {getattr(exc, 'reason', exc)}") from None


def run(
    args: argparse.Namespace,
    session: Callable[[], boto3.Session],
    out: IO[bytes],
    err: TextIO,
) -> int:
    _check_url(args.url, "the URL")
    client_id, secret = credentials(args)
    body = _body(args.data)
    if args.auth in ("jwt", "dpop"):
        url = token_url(args, session)
        # DPoP's tokens are cached apart from Bearer ones: they are bound to the kept key.
        kind = ["\x00dpop"] if args.auth == "dpop" else []
        path = cache_path(client_id, url, args.scopes + kind)
        dpop = dpop_signer(args, path) if args.auth == "dpop" else None

        def authorization(token: str) -> dict[str, str]:
            if dpop is None:
                return {"Authorization": f"Bearer {token}"}
            method = args.method or ("POST" if body is not None else "GET")
            return {"Authorization": f"DPoP {token}", "DPoP": dpop.proof(method, args.url, token)}

        token = None if args.no_cache or args.dpop_key else _cached(path)
        fresh = token is None
        if token is None:
            token, expires_in = fetch_token(
                client_id, secret, url, args.scopes, args.max_time, dpop
            )
            if not args.no_cache and not args.dpop_key:
                _store(path, token, expires_in)
        status, reason, headers, content = _send(args, body, authorization(token))
        if status in (401, 403) and not fresh:
            # A cached token refused (revoked, or its secret rotated): once more, with a new one.
            path.unlink(missing_ok=True)
            token, expires_in = fetch_token(
                client_id, secret, url, args.scopes, args.max_time, dpop
            )
            _store(path, token, expires_in)
            status, reason, headers, content = _send(args, body, authorization(token))
    else:
        if args.auth == "basic":
            pair = f"{client_id}:{secret}".encode()
            auth = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        elif args.auth == "access-headers":
            auth = {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": secret}
        else:
            auth = {"Gatekey-Client-Id": client_id, "Gatekey-Client-Secret": secret}
        status, reason, headers, content = _send(args, body, auth)
    if args.include:
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
        out.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    out.write(content)
    out.flush()
    if 300 <= status < 400 and not args.include:
        err.write(
            f"gatekey: redirect ({status}) to {dict(headers).get('Location')}: not followed\n"
        )
    return EXIT_HTTP_ERROR if args.fail and status >= 400 else 0
