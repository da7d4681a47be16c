"""Credentials out of anything shown: the password of a URL, secret-named query parameters.

Why one module: a URL reaches people through many doors (a config's repr, `model_dump`, a CLI
message, a log line, an exception's text), and each door masking in its own way is how one
was missed (`OPIK_URL_OVERRIDE=http://user:pw@host` showed in `repr(config)`). Every URL
setting and every message that may quote one goes through `mask_credentials`.

    mask_credentials("postgresql://obs:s3cret@db:5432/e2i")  -> "postgresql://obs:***@db:5432/e2i"
    mask_credentials("redis://:pw@cache:6379/0")             -> "redis://:***@cache:6379/0"
    mask_credentials("https://ghp_token@example.com/api")     -> "https://***@example.com/api"
    mask_credentials("http://h/api?apikey=abc&x=1")           -> "http://h/api?apikey=***&x=1"
    mask_credentials("host=db password=s3cret dbname=e2i")    -> "host=db password=*** dbname=e2i"

The user name is kept when a password follows it (it helps to know who connects) and masked
when it stands alone (a bare token in the user part is a common way to pass a key). A password
may hold a raw `@`: the user part runs to the last `@` before the host.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "describe_failure", "mask_credentials"]

MASK = "***"
_MAX_REASON_CHARS = 300

# scheme://userinfo@ where userinfo runs (greedily) to the last '@' before the path starts
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s'\"]*)@")
# ?password=... in a URL's query, or password=... in a libpq "host=db password=..." string
_SECRET_PARAMETER = re.compile(
    r"(?i)((?:^|[?&;\s])\w*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey)\s*=\s*)"
    r"(?:'[^']*'|\"[^\"]*\"|[^&#\s'\"]*)"
)


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{user}:{MASK}@" if colon else f"{scheme}{MASK}@"


def mask_credentials(text: str) -> str:
    """`text` with the credentials of every URL in it masked (see the module docstring)."""
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAMETER.sub(rf"\g<1>{MASK}", _URL_USERINFO.sub(_mask_userinfo, text))


def describe_failure(exc: BaseException, timeout: float | None = None) -> str:
    """`Type: message` on one line, secrets masked; an empty message (`TimeoutError()`) says
    what it means instead of leaving `TimeoutError: `."""
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, TimeoutError):
        text = f"no answer within {timeout:g} s" if timeout else "no answer in time"
    text = mask_credentials(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"
