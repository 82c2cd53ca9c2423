"""moto's server answering one request at a time.

DynamoDB executes each request atomically; moto's backends are not thread-safe, and its
server is threaded, so concurrent callers (the gateway's threads, the authorizer's background
writer) could see a transaction half-applied. Serving requests one at a time gives the local
stack the per-request atomicity real DynamoDB has, and nothing more.

    python -m gatekey_local.moto_serial HOST PORT
"""

from __future__ import annotations

import os
import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
