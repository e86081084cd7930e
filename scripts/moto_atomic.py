"""moto_server, one request at a time: `python3 moto_atomic.py HOST PORT`.

DynamoDB applies every conditional write atomically (the condition and the write are one step
per item), which is what the stores' compare-and-set writes rely on. moto's own server is
threaded and checks a condition, then writes, without a lock: two concurrent conditional writes
can both pass, which no real table allows. Serialising the requests restores the atomicity the
tests need, while many clients still connect and wait at once as they would on AWS.

It also counts the calls each access key makes, by operation (the `X-Amz-Target` header, e.g.
`DynamoDB_20120810.GetItem`, `TrentService.Sign`): `GET /__counts/KEY` answers them as JSON and
`DELETE /__counts/KEY` sets them back to nothing. A test or the bench harness gives each
function or test its own access key, and reads what one request cost in round trips.
"""

import json
import os
import re
import sys
import threading
from collections import Counter, defaultdict

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
    counts: defaultdict[str, Counter] = defaultdict(Counter)

    def counted(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/__counts/"):
            key = path[len("/__counts/"):]
            with lock:
                if environ["REQUEST_METHOD"] == "DELETE":
                    counts.pop(key, None)
                body = json.dumps(dict(counts.get(key, {}))).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        credential = re.search(r"Credential=([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        target = environ.get("HTTP_X_AMZ_TARGET")
        if credential and target:
            with lock:
                counts[credential.group(1)][target] += 1
        return one_at_a_time(environ, start_response)

    def one_at_a_time(environ, start_response):
        with lock:
            # The whole response is produced under the lock, not just the call.
            return list(app(environ, start_response))

    run_simple(host, port, counted, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
