"""Secrets in URLs: a storage or MLflow URL may carry a database password; anything shown or stored gets the
redacted form, and the real URL travels to child processes only by environment (never on a command line).
"""

from __future__ import annotations

import re

MASK = "***"
_SCHEME_USER = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@?#]*):")
_QUERY_PW = re.compile(r"(?P<key>[?&](?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


def _userinfo(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, user, raw password, rest after its '@') of ``url``, or None without a password.

    The password runs from the ':' after the user to the LAST '@' before the query: SQLAlchemy's parser
    ends it at the first '@' (a raw '@' is not allowed there, but users type it), so everything up to the
    last one is masked: '/', ':', '#', '%', '+', '=' and '@' included, percent-encoded or not.
    """
    m = _SCHEME_USER.match(url)
    if m is None:
        return None
    rest = url[m.end() :]
    query = rest.find("?")
    at = rest.rfind("@", 0, query if query >= 0 else len(rest))
    if at < 0:
        return None
    return m.group("scheme"), m.group("user"), rest[:at], rest[at + 1 :]


def _sqlalchemy_password(url: str) -> str | None:
    """The (decoded) password SQLAlchemy reads from ``url``; None when it reads none or cannot parse it."""
    try:
        from sqlalchemy.engine.url import make_url

        return make_url(url).password or None
    except Exception:
        return None


def password_of(url: str | None) -> str | None:
    """The password in ``url`` as written (``scheme://user:PASSWORD@host`` or ``?password=``), else None."""
    if not url:
        return None
    parts = _userinfo(url)
    if parts and parts[2] and parts[2] != MASK:
        return parts[2]
    q = _QUERY_PW.search(url)
    value = url[q.end("key") : q.end()] if q else ""
    return value if value and value != MASK else None


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (URLs without one unchanged)."""
    parts = _userinfo(url)
    if parts is not None:
        scheme, user, _, rest = parts
        url = f"{scheme}{user}:{MASK}@{rest}"
    return _QUERY_PW.sub(lambda m: f"{m.group('key')}{MASK}", url)


def redact_text(text: str, *urls: str | None) -> str:
    """``text`` (an error message, a log line) with the password of each of ``urls`` masked wherever it
    appears, and every URL-shaped userinfo password masked."""
    for url in urls:
        for pw in (password_of(url), url and _sqlalchemy_password(url)):  # as written and as decoded
            if pw and pw != MASK:
                text = text.replace(pw, MASK)
    return re.sub(
        r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@\s]*)@",
        lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@",
        text,
    )


def is_redacted(url: str | None) -> bool:
    """Whether ``url`` is a redacted form (its password must come from elsewhere: the environment)."""
    return bool(url) and (f":{MASK}@" in str(url) or f"={MASK}" in str(url))
