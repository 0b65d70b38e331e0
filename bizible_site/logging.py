"""One log line per event, as `key=value` pairs that log search tools can index.

Auth events are logged with `extra={"event": ..., "account": ..., "outcome": ...}`; every extra
field is appended. Values are quoted when they contain spaces. Callers pass identifiers and
AADSTS codes only, never secrets or tokens (tests assert that on captured records).
"""

import logging

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(value: object) -> str:
    """One value, escaped so that no value can end its field, forge another, or start a line:
    backslashes, quotes and every control or line-breaking character are written as escapes."""
    text = "".join(
        _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if not c.isprintable() else c) for c in str(value)
    )
    return f'"{text}"' if (" " in text or "=" in text or '"' in text or not text) else text


def _describe(key: str, value: object) -> object:
    """Django's request logging passes the request itself: keep its method and path only, as
    its query string can hold an authorization code."""
    if key == "request" and hasattr(value, "path"):
        return f"{getattr(value, 'method', '')} {value.path}"
    return value


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(
            (key, _describe(key, value))
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS
        )
        line = " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
