"""Secrets in URLs: a storage or MLflow URL may carry a database password; anything shown or stored gets the
redacted form, and the real URL travels to child processes only by environment (never on a command line).
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@")
_QUERY_PW = re.compile(r"(?P<key>[?&](?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


def password_of(url: str | None) -> str | None:
    """The password in ``url`` (``scheme://user:PASSWORD@host`` or ``?password=``), None when it has none."""
    if not url:
        return None
    m = _USERINFO.match(url)
    if m and m.group("pw") and m.group("pw") != MASK:
        return m.group("pw")
    q = _QUERY_PW.search(url)
    value = url[q.end("key") : q.end()] if q else ""
    return value if value and value != MASK else None


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (URLs without one unchanged)."""
    url = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", url, count=1)
    return _QUERY_PW.sub(lambda m: f"{m.group('key')}{MASK}", url)


def redact_text(text: str, *urls: str | None) -> str:
    """``text`` (an error message, a log line) with the password of each of ``urls`` masked wherever it
    appears, and every URL-shaped userinfo password masked."""
    for url in urls:
        pw = password_of(url)
        if pw:
            text = text.replace(pw, MASK)
    return re.sub(
        r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@",
        lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@",
        text,
    )


def is_redacted(url: str | None) -> bool:
    """Whether ``url`` is a redacted form (its password must come from elsewhere: the environment)."""
    return bool(url) and (f":{MASK}@" in str(url) or f"={MASK}" in str(url))
