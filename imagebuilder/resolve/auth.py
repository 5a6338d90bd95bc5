"""Where credentials for channels and indexes come from: one function each.

Specs and records keep URLs without credentials (CONTRACT.md); the resolver talks to the
server with the URL as the user gave it, else with credentials from imagebuilder.sources
(config [auth."HOST"] tables, ~/.netrc; issue 9).
"""

from __future__ import annotations

from collections.abc import Mapping


def conda_channel_url(channel: str, secrets: Mapping[str, str] | None = None) -> str:
    """The channel URL (or name) to hand to rattler, with credentials if we have them."""
    return _with_credentials(channel, secrets, "channel_auth")


def pypi_index_url(url: str, secrets: Mapping[str, str] | None = None) -> str:
    """The index or find-links URL to hand to uv, with credentials if we have them."""
    return _with_credentials(url, secrets, "index_auth")


def _with_credentials(url: str, secrets: Mapping[str, str] | None, how: str) -> str:
    """The URL as the user typed it when it carried credentials (remembered for this process,
    so the cache's downloads get them too); else credentials from config [auth] / netrc
    (imagebuilder.sources, issue 9)."""
    from imagebuilder import sources

    given = (secrets or {}).get(url)
    if given:
        sources.remember(given)
        return given
    return getattr(sources, how)(url)
