"""Schemathesis hooks for `contract/fuzz` (loaded through SCHEMATHESIS_HOOKS).

A generated join (`POST /v1/queue/tokens`) carries a random `idToken` that no login
service signed, so on an app in jwt mode every one is refused with 401, and the
stateful phase could never follow a join's token into holds and payments. When
`contract/fuzz` gives a file of real id tokens (BOXOFFICE_FUZZ_ID_TOKENS, one per line,
each for a different user, minted by tools/issuer), every other generated join with a
string `idToken` gets the next real one instead: half the joins test refusals, half
get a place in line (or 403 IDENTITY_MISMATCH when the generated `userId` is not the
token's subject), and their tokens feed the links.
"""

import itertools
import os

import schemathesis

_path = os.environ.get("BOXOFFICE_FUZZ_ID_TOKENS")
_tokens = [line.strip() for line in open(_path) if line.strip()] if _path else []
_next = itertools.cycle(_tokens) if _tokens else None
_joins = itertools.count()


@schemathesis.hook
def before_call(context, case, kwargs):
    if _next is None or case.method.upper() != "POST" or case.path != "/v1/queue/tokens":
        return
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("idToken"), str) and next(_joins) % 2 == 0:
        body["idToken"] = next(_next)
