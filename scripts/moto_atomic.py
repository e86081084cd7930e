"""moto_server, one request at a time: `python3 moto_atomic.py HOST PORT`.

DynamoDB applies every conditional write atomically (the condition and the write are one step
per item), which is what the stores' compare-and-set writes rely on. moto's own server is
threaded and checks a condition, then writes, without a lock: two concurrent conditional writes
can both pass, which no real table allows. Serialising the requests restores the atomicity the
tests need, while many clients still connect and wait at once as they would on AWS.
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            # The whole response is produced under the lock, not just the call.
            return list(app(environ, start_response))

    run_simple(host, port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
