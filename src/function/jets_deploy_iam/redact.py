"""Log redaction: a presigned ResponseURL is a write credential and never reaches a log.

crhelper logs the URL at DEBUG, and an exception about it (a bad URL, a refused connection) carries
the whole URL, signature and session token included, in its text and traceback. The filter below
is attached to every handler that emits the function's records, so it sees each record once,
whatever logger it came from, and rewrites the message, the exception text and the traceback.
"""

from __future__ import annotations

import logging
import re
import traceback

_SIGNED_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")
_SIGNED_FIELD = re.compile(
    r"(X-Amz-(?:Signature|Credential|Security-Token)(?:=|%3D))[^&\s'\"]+", re.IGNORECASE
)


def redact(text: str) -> str:
    """Remove every presigned query string, and any stray signing field, from ``text``."""
    return _SIGNED_FIELD.sub(r"\1<redacted>", _SIGNED_QUERY.sub(r"\1?<redacted>", text))


class RedactPresignedUrls(logging.Filter):
    """Rewrites a record's message and exception before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            kind, error, trace = record.exc_info
            text = "".join(traceback.format_exception(kind, error, trace)).rstrip()
            # Plain formatters print exc_text; Powertools prints the "exception" attribute.
            record.exc_text = redact(text)
            record.exception = record.exc_text
            record.exception_name = kind.__name__ if kind else "Exception"
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(*loggers: logging.Logger) -> None:
    """Attach the filter to every handler of ``loggers`` (and of the root logger)."""
    redactor = RedactPresignedUrls()
    for target in (*loggers, logging.getLogger()):
        for handler in target.handlers:
            if not any(isinstance(f, RedactPresignedUrls) for f in handler.filters):
                handler.addFilter(redactor)
