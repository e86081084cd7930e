"""schemathesis hooks for test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.hook
def filter_body(context, body):
    """Drops request bodies that are not UTF-8 at all.

    schemathesis sometimes replaces a JSON body with random bytes. When those bytes are not UTF-8,
    `cargo lambda watch` cannot put them into the Lambda event and answers 500 text/plain itself,
    before any function runs; the handlers never see such a request locally. (Bytes that are UTF-8
    but not JSON still go through and must get the handlers' 400.)
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


@schemathesis.hook
def before_call(context, case, kwargs):
    """Keeps alive the session every secured operation is tested with.

    schemathesis signs up and logs in once (POST /register, POST /login) and sends that access
    token with every operation that takes a bearer token. Sent to POST /logout, it would end that
    session (with `scope=global`, every session of the account), and every later GET /me would
    get 401. So /logout gets that token with its signature cut short: the bearer path is still
    tested, and must answer the documented 401 (or 400/422 for the body); ending sessions is
    tested by the stateful phase's LogOut link and by test_oauth2_clients.py.
    """
    if case.operation.path != "/logout":
        return
    for name in [name for name in case.headers or {} if name.lower() == "authorization"]:
        case.headers[name] = case.headers[name][:-8]
