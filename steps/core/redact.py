"""Credential redaction: the one owner of what counts as a secret in text Loopline prints or logs.

Loopline keeps no secret-valued settings (S3 credentials come from the AWS chain, MLflow's from
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``), but a URI setting may carry one: the
userinfo of ``https://user:password@host/`` or a signed query (``?X-Amz-Signature=...``). Every
message, repr and log line that may hold such a URI goes through :func:`redact` first:

- a URI's userinfo keeps the user name and loses the password (``https://user:***@host/``); a
  user name alone may be a token and is replaced (``https://***@host/``);
- the value of a secret-looking query parameter or ``name=value`` pair is replaced
  (``X-Amz-Signature=***``, ``token=***``, ``password=***``);
- a setting whose name looks secret (:func:`is_secret_name`) is never echoed at all.
"""

from __future__ import annotations

import re

MASK = "***"
"""What replaces a secret."""

# Words that mark a name (a setting, a query parameter) as holding a secret, matched as whole
# segments of the name split on "_", "-" and ".": ``api_key`` is a secret, ``key_columns`` not.
_SENSITIVE_WORDS = (
    r"(?:password|passwd|pwd|secret|token|credentials?|signature|sig|api[_-]?key|apikey|"
    r"access[_-]?key|private[_-]?key|authorization|auth)"
)
_SECRET_NAME = re.compile(rf"(?:^|[_.\-]){_SENSITIVE_WORDS}(?:$|[_.\-])", re.IGNORECASE)

# scheme://userinfo@ : userinfo runs to the last "@" before the host's end ("/", "?", "#",
# whitespace or a quote), so an unencoded "@" in a password is masked with the rest of it.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#'\"<>]+)@")

# secret_name=value in a query string, a form body or free text. Only a secret-looking name
# matches, so a URI that is itself a value (``X=https://h/?token=t``) is still scanned inside.
_SECRET_PAIR = re.compile(
    rf"(?<![A-Za-z0-9_.\-])(?P<name>(?:[A-Za-z0-9]+[_.\-])*{_SENSITIVE_WORDS}(?:[_.\-][A-Za-z0-9]+)*)"
    r"=(?P<value>[^&\s'\"#;,)<>]+)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """Return True when ``name`` (a setting, variable or parameter name) suggests a secret."""
    return bool(_SECRET_NAME.search(name))


def redact(text: str) -> str:
    """Return ``text`` with every URI's credentials and every secret ``name=value`` masked.

    Safe on any text (a message, a traceback, a whole log line): what is not a credential is
    left as it was.
    """
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_PAIR.sub(_mask_pair, text)


def redact_value(name: str, value: object) -> object:
    """Return ``value`` as it may be shown for the setting ``name``.

    Returns:
        :data:`MASK` for a set value of a secret-looking name; a string with its credentials
        redacted (:func:`redact`); any other value unchanged.
    """
    if value is None:
        return None
    if is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return redact(value)
    return value


def _mask_userinfo(match: re.Match[str]) -> str:
    user, has_password, _ = match["userinfo"].partition(":")
    shown = f"{user}:{MASK}" if has_password and user else MASK
    return f"{match['scheme']}{shown}@"


def _mask_pair(match: re.Match[str]) -> str:
    return f"{match['name']}={MASK}"
