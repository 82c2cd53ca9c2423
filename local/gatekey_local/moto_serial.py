"""moto's server answering one request at a time.

DynamoDB executes each request atomically; moto's backends are not thread-safe, and its
server is threaded, so concurrent callers (the gateway's threads, the authorizer's background
writer) could see a transaction half-applied. Serving requests one at a time gives the local
stack the per-request atomicity real DynamoDB has, and nothing more.

    python -m gatekey_local.moto_serial HOST PORT [STATE_FILE]

With STATE_FILE, moto's state is loaded from it (when it exists) before the first request, and
saved to it after each request that may change it (gatekey_local.moto_state).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

from gatekey_local import moto_state


def saving(app: Any, path: Path) -> Any:
    """The WSGI app, saving moto's state after each request that may change it. Requests are
    served one at a time, so the state saved is the one the request left."""

    def application(environ: dict[str, Any], start_response: Any) -> Any:
        answer = list(app(environ, start_response))
        if moto_state.may_change(environ):
            try:
                moto_state.save(path)
            except Exception as exc:  # noqa: BLE001 - said, and the request is still answered
                print(f"gatekey_local: cannot save moto's state to {path}: {exc}", file=sys.stderr)
        return answer

    return application


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    # One line per request on stderr is werkzeug's; errors only.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app: Any = DomainDispatcherApplication(create_backend_app)
    if len(sys.argv) > 3:
        state = Path(sys.argv[3])
        if state.exists():
            try:
                moto_state.load(state)
            except Exception as exc:  # noqa: BLE001 - one line, then the stack stops
                print(f"gatekey_local: cannot load {state}: {exc}", file=sys.stderr)
                sys.exit(2)
        app = saving(app, state)
    run_simple(
        host,
        port,
        app,
        threaded=False,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
