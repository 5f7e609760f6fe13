"""What the server never writes to a log: credentials, in any spelling, and characters that forge log lines.

Every record of the server's loggers (`cim.server`, uvicorn's) goes through `SecretFilter`, which rewrites the
formatted message (traceback included) with `redact`:

1. percent-decoding, twice (a client can spell `api_key` as `api%5Fkey`, and the server decodes it once to
   authenticate, so the log must see what the server saw; the second pass catches a doubly encoded copy);
2. masking: the secret part of every API key (`cim_<id>_***`), the value of every credential-looking query or form
   parameter (`api_key`, `apikey`, `key`, `token`, `access_token`, `password`, `secret`, ...), and the
   credentials of `Authorization` (Basic, Bearer, any scheme), `X-API-Key`, `Cookie` and `Proxy-Authorization`
   header lines;
3. escaping control characters (CR, LF, ...) as `\\xNN`, so a request cannot start a forged log line (a
   traceback keeps its line feeds).

`masked_headers` gives a request's headers with the credential headers masked, for code that logs headers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

_KEY = re.compile(r"cim_([0-9a-fA-F]{8})_[A-Za-z0-9_\-]{4,}")
_PARAM = re.compile(r"(?i)(?<![A-Za-z0-9_])((?:x[-_])?(?:api[-_]?key|apikey|key|token|access[-_]?token|auth|"
                    r"password|passwd|pwd|secret|signature|sig|credentials?))(\s*[=:]\s*)([^&\s,;\"']+)")
_HEADER = re.compile(r"(?i)((?:proxy-)?authorization|x-api-key|cookie)(['\"]?\s*[:=]\s*(?:b?['\"])?)"
                     r"(?:(basic|bearer|digest|negotiate|token|apikey)\s+)?[^\s'\",;]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LF = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie"})


def redact(text: str, *, multiline: bool = False) -> str:
    """`text` percent-decoded, with every credential masked and control characters escaped (see the module doc).

    Args:
        text: a log message.
        multiline: keep line feeds (a traceback); every other control character is escaped either way.
    """
    for _ in range(2):
        if "%" not in text and "+" not in text:
            break
        text = unquote_plus(text, errors="replace")
    text = _KEY.sub(r"cim_\1_***", text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{(m.group(3) + ' ') if m.group(3) else ''}***", text)
    text = _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return (_CONTROL_BUT_LF if multiline else _CONTROL).sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def masked_headers(headers: Iterable[tuple[str | bytes, str | bytes]]) -> list[tuple[str, str]]:
    """Request headers as text with the values of credential headers replaced by `***`."""
    out = []
    for k, v in headers:
        name = k.decode("latin-1") if isinstance(k, bytes) else k
        value = v.decode("latin-1") if isinstance(v, bytes) else v
        if name.lower() in SENSITIVE_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value.strip() else ""
            value = f"{scheme} ***" if scheme else "***"
        out.append((name, redact(value)))
    return out


class SecretFilter(logging.Filter):
    """Rewrites each record's message (and its traceback) with `redact`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record  # noqa: BLE001
            message = str(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), ()
        if record.exc_text:
            record.exc_text = redact(record.exc_text, multiline=True)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, multiline=True)
        return True


_LOGGERS = ("cim.server", "uvicorn", "uvicorn.error", "uvicorn.access")


def install(names: Iterable[str] = _LOGGERS) -> None:
    """Put a `SecretFilter` on the server's loggers (once each)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretFilter) for f in logger.filters):
            logger.addFilter(SecretFilter())


__all__ = ["SENSITIVE_HEADERS", "SecretFilter", "install", "masked_headers", "redact"]
