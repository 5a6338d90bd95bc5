"""The one place that builds rattler's Gateway and runs a solve through it.

The trap (LOCAL-SERVICES.md, conda/rattler#2719): py-rattler 0.28 revalidates its cached
sharded-repodata index with If-Modified-Since; a server that answers 304 without repeating
ETag/Last-Modified (python's http.server, some proxies) makes the *second* solve fail with
"unexpected status code (304 Not Modified) ... repodata_shards.msgpack.zst". Real hosts that
serve shards well (prefix.dev) make shards much faster, so they stay on by default: when a
channel trips the trap we switch shards off for that channel, remember it in the cache dir
(so later runs skip the failing request), and solve again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

NO_SHARDS_FILE = "no-shards.json"
_SHARD_304 = re.compile(r"304 Not Modified\)? when fetching (\S+?)/[^/\s]+/repodata_shards")


def repodata_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "repodata"


def _no_shards_path(cache_dir: Path) -> Path:
    return repodata_dir(cache_dir) / NO_SHARDS_FILE


def load_no_shards(cache_dir: Path) -> set[str]:
    try:
        return set(json.loads(_no_shards_path(cache_dir).read_text()))
    except (OSError, ValueError):
        return set()


def _save_no_shards(cache_dir: Path, urls: set[str]) -> None:
    path = _no_shards_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    from imagebuilder.atomic import write_atomic

    write_atomic(path, json.dumps(sorted(urls)).encode())


def _key(url: str) -> str:
    from imagebuilder.urls import strip_credentials

    return strip_credentials(url).rstrip("/") + "/"


def make_gateway(cache_dir: Path, channel_urls: list[str] = (), no_shards: set[str] = frozenset()):
    """A Gateway caching under cache_dir, with shards off for the channels in no_shards (kept
    without credentials; matched against the URLs actually used, which may carry them)."""
    from rattler import Channel, Gateway, SourceConfig

    bases = [Channel(u).base_url for u in channel_urls]
    per_channel = {b: SourceConfig(sharded_enabled=False) for b in bases if _key(b) in no_shards}
    return Gateway(cache_dir=repodata_dir(cache_dir), per_channel_config=per_channel or None)


def shard_trap_channel(message: str) -> str | None:
    """The channel (no credentials, trailing slash) whose shard index hit the 304 trap."""
    m = _SHARD_304.search(message)
    return _key(m.group(1)) if m else None


async def solve(cache_dir: Path, channel_urls: list[str], specs: list, **kwargs):
    """rattler.solve with our gateway; retries once per channel that trips the 304 trap.
    Returns (records, gateway) so callers can query the same repodata for messages."""
    import rattler
    from rattler import Channel
    from rattler.exceptions import GatewayError

    no_shards = load_no_shards(cache_dir)
    channels = [Channel(u) for u in channel_urls]
    while True:
        gateway = make_gateway(cache_dir, channel_urls, no_shards)
        try:
            records = await rattler.solve(channels, specs, gateway=gateway, **kwargs)
            return records, gateway
        except GatewayError as e:
            url = shard_trap_channel(str(e))
            if url is None or url in no_shards:
                raise
            no_shards.add(url)
            _save_no_shards(cache_dir, no_shards)
