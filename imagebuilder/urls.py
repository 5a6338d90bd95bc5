"""URLs without secrets: what records, ids and messages may contain."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# conda's /t/<token>: in a URL path up to the next "/" or the end of the path (a channel
# given as https://host/t/<token> has nothing after it); in free text also up to a space or
# quote, so the words after a URL survive redaction.
_CONDA_TOKEN = re.compile(r"/t/[^/]+(?=/|$)")
_CONDA_TOKEN_TEXT = re.compile(r"/t/[^/\s'\"<>]+(?=[/\s'\"<>]|$)")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_BARE_USERINFO = re.compile(r"(?<![\w/:.@-])[^\s/@:'\"]+:[^\s/@'\"]+@(?=[\w.-])")


def strip_credentials(url: str) -> str:
    """Drop user:password@ and conda's /t/<token>/ from a URL; keep everything else."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = host
    # ssh URLs name a login user (git@github.com) that is not a secret and is needed to clone.
    if at and parts.scheme.endswith("ssh") and ":" not in userinfo:
        netloc = f"{userinfo}@{host}"
    path = _CONDA_TOKEN.sub("", parts.path)
    # Query strings can carry tokens (signed URLs): never keep them in records. The fragment
    # stays: it carries no secret and means something (#subdirectory=, #sha256=, #egg=).
    return urlunsplit((parts.scheme, netloc, path, "", parts.fragment))


def redact(text: str) -> str:
    """Mask credentials in free text (error messages from subprocesses and libraries)."""
    text = _USERINFO.sub("***@", text)
    text = _BARE_USERINFO.sub("***@", text)
    return _CONDA_TOKEN_TEXT.sub("/t/***", text)


def normalize_channel(channel: str) -> str:
    """Channel as recorded in a spec: credentials stripped, no trailing slash."""
    return strip_credentials(channel.strip()).rstrip("/")
