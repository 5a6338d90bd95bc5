"""Where credentials for channels and indexes come from: one function each.

Specs and records keep URLs without credentials (CONTRACT.md); the resolver talks to the
server with the URL as the user gave it. Today that is the only source; ~/.condarc tokens,
netrc, pip.conf / uv.toml and per-host config plug in here (issue 9), nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping


def conda_channel_url(channel: str, secrets: Mapping[str, str] | None = None) -> str:
    """The channel URL (or name) to hand to rattler, with credentials if we have them."""
    return (secrets or {}).get(channel, channel)


def pypi_index_url(url: str, secrets: Mapping[str, str] | None = None) -> str:
    """The index or find-links URL to hand to uv, with credentials if we have them."""
    return (secrets or {}).get(url, url)
