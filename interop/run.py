"""`make interop`: Gatekey against software nobody here wrote, over real HTTP.

Starts the local stack (as `make run` does, on a free port), creates a service token through
the admin API with the `gatekey` CLI (as the e2e tests do; with the scope gatekey:introspect, so
it may introspect its own tokens), runs interop/node/interop.mjs
(openid-client and jose) against it, and stops the stack. Exits with the script's status.

DPoP (RFC 9449): a second token, created with --dpop-required, is used by the script through
openid-client's DPoP support and, here, by proofs built by hand from the RFC with joserfc
(`python_dpop`): a bound token, the protected demo route, and the attacks that must fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from gatekey_local.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
# This checkout's CLI (as tests/e2e run it), not whichever one .venv's editable install names.
GATEKEY = [sys.executable, "-m", "gatekey_cli.main"]
CLI_PATH = os.pathsep.join(str(ROOT / p) for p in ("cli", "layers/gatekey"))
AUDIENCE = "gatekey"  # AccessTokenAudience's default, which the local stack keeps
STARTUP_SECONDS = 60


def start_stack(port: int, environment: dict[str, str], output: list[str]) -> subprocess.Popen[str]:
    """The local stack, answering on `port`; what it prints is kept in `output`."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter, this checkout
        [sys.executable, "-m", "gatekey_local", "--port", str(port)],
        cwd=ROOT,
        env={**environment, "PYTHONPATH": os.pathsep.join(("layers/gatekey", "local"))},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stdout = process.stdout
    if stdout is None:
        raise RuntimeError("the local stack's output is not a pipe")
    for line in stdout:  # the banner, then one JSON line when serving (none if it fails)
        output.append(line)
        if line.startswith('{"ready"'):
            break
    # Keep reading what it prints (its functions log to stdout), or its pipe fills up.
    threading.Thread(target=lambda: output.extend(stdout), daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/.well-known/jwks.json", timeout=5
            ):
                return process
        except OSError:
            time.sleep(0.1)
    stop_stack(process)
    sys.stderr.writelines(output)
    raise SystemExit(f"interop: the local stack did not start within {STARTUP_SECONDS} s")


def stop_stack(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)  # the stack stops moto and its server on SIGTERM
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def create_service_token(
    url: str, environment: dict[str, str], *extra: str, name: str = "interop-bot"
) -> dict[str, str]:
    result = subprocess.run(  # noqa: S603 - this interpreter, this checkout's CLI
        [
            *GATEKEY,
            "--endpoint",
            url,
            "--json",
            "create",
            name,
            "--scope",
            "read",
            "--scope",
            "gatekey:introspect",
            *extra,
        ],
        env={**environment, "PYTHONPATH": CLI_PATH},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"interop: `gatekey create` failed: {result.stderr.strip()}")
    created: dict[str, str] = json.loads(result.stdout)
    return created


def _post(url: str, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - the local stack's http://127.0.0.1
        url, data=urllib.parse.urlencode(form).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http://127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def python_dpop(url: str, bot: dict[str, str]) -> int:
    """DPoP with proofs built by hand from RFC 9449 §4.2 with joserfc (Authlib 1.9.6 has no
    DPoP): a bound token from the token endpoint, the demo route twice, and each attack of the
    attack suite over real HTTP, refused."""
    import base64
    import hashlib
    import secrets

    from joserfc import jwt
    from joserfc.jwk import ECKey, OctKey

    key = ECKey.generate_key("P-256")

    def proof(
        htm: str, htu: str, token: str | None = None, *, signer: Any = None, **over: Any
    ) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time()),
        }
        if token is not None:
            claims["ath"] = (
                base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
        claims |= over
        signer = signer or key
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": signer.as_dict(private=False)}
        return str(jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, signer))

    token_url = f"{url}/oauth2/token"
    pair = f"{bot['client_id']}:{bot['client_secret']}".encode()
    basic = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    form = {"grant_type": "client_credentials", "scope": "read"}
    status, body = _post(token_url, basic | {"DPoP": proof("POST", token_url)}, form)
    if status != 200 or body.get("token_type") != "DPoP":
        print(f"FAIL joserfc: token endpoint answered {status} {body}")
        return 1
    token = body["access_token"]
    print(f"ok  joserfc proof at the token endpoint: token_type={body['token_type']}")
    whoami = f"{url}/demo/whoami"
    fresh = proof("GET", whoami, token)
    for attempt in (1, 2):
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof("GET", whoami, token)}
        if attempt == 1:
            headers["DPoP"] = fresh
        status, answer = _get(whoami, headers)
        if status != 200:
            print(f"FAIL joserfc: the protected route answered {status} {answer!r}")
            return 1
        print(f"ok  joserfc proof at the protected route (request {attempt}): {answer.decode()}")
    secret = OctKey.generate_key(256)
    hmac_header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.as_dict(private=True)}
    hmac_claims = {"jti": "h", "htm": "GET", "htu": whoami, "iat": int(time.time())}
    leaky = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=True)}
    attacks = {
        "replayed proof": fresh,
        "proof for another method": proof("POST", whoami, token),
        "proof for another URL": proof("GET", f"{url}/demo/cached/whoami", token),
        "proof signed by another key": proof(
            "GET", whoami, token, signer=ECKey.generate_key("P-256")
        ),
        "proof without ath": proof("GET", whoami),
        "proof with a stale iat": proof("GET", whoami, token, iat=int(time.time()) - 300),
        "proof with an HMAC alg": str(jwt.encode(hmac_header, hmac_claims, secret)),
        "proof with a private key in its jwk": str(
            jwt.encode(
                leaky, {"jti": "p", "htm": "GET", "htu": whoami, "iat": int(time.time())}, key
            )
        ),
    }
    failed = 0
    for name, attack in attacks.items():
        status, _ = _get(whoami, {"Authorization": f"DPoP {token}", "DPoP": attack})
        failed += status != 403
        print(f"{'ok ' if status == 403 else 'FAIL'} joserfc attack refused: {name}: {status}")
    status, _ = _get(whoami, {"Authorization": f"Bearer {token}"})
    failed += status != 403
    verdict = "ok " if status == 403 else "FAIL"
    print(f"{verdict} joserfc attack refused: bound token as Bearer: {status}")
    return 1 if failed else 0


def main() -> int:
    port = int(os.environ.get("GATEKEY_PORT") or free_port())
    url = f"http://127.0.0.1:{port}"
    # The local stack and the CLI's SigV4 use the same local credentials, never real ones.
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    environment.pop("AWS_SESSION_TOKEN", None)
    output: list[str] = []
    stack = start_stack(port, environment, output)
    status = 1
    try:
        token = create_service_token(url, environment)
        print(f"interop: local stack at {url}; service token {token['client_id']} created")
        dpop = create_service_token(url, environment, "--dpop-required", name="interop-dpop-bot")
        print(f"interop: service token {dpop['client_id']} created (--dpop-required)")
        script = subprocess.run(  # noqa: S603
            ["node", str(ROOT / "interop" / "node" / "interop.mjs")],  # noqa: S607 - node on PATH
            env={
                **os.environ,
                "GATEKEY_ISSUER": url,  # the local stack's issuer is its URL
                "GATEKEY_AUDIENCE": AUDIENCE,
                "GATEKEY_CLIENT_ID": token["client_id"],
                "GATEKEY_CLIENT_SECRET": token["client_secret"],
                "GATEKEY_DPOP_CLIENT_ID": dpop["client_id"],
                "GATEKEY_DPOP_CLIENT_SECRET": dpop["client_secret"],
                "GATEKEY_PROTECTED_URL": f"{url}/demo/whoami",
            },
            check=False,
            timeout=120,
        )
        status = script.returncode
        if status == 0:
            status = python_dpop(url, dpop)
    finally:
        stop_stack(stack)
        if status != 0:  # what the stack printed (its functions' logs), to see why
            sys.stderr.writelines(output)
    return status


if __name__ == "__main__":
    sys.exit(main())
