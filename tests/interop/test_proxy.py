"""HTTP(S)_PROXY and NO_PROXY reach every client a resolve uses: rattler (channel), uv (index)
and the cache's downloads."""

from __future__ import annotations

import pytest
from interop_support import Cli, CountingProxy


@pytest.fixture
def proxy():
    p = CountingProxy()
    yield p
    p.stop()


def test_resolve_and_cache_go_through_the_proxy_unless_no_proxy(rig, proxy, tmp_path):
    rig.need("channel_url", "index_url")
    args = ["resolve", "--conda", "tinybar", "--conda", "python=3.11", "--pypi", "imgb-uses-six",
            "-c", rig.channel_url, "--index-url", rig.index_url, "--arch", "linux-64", "-q"]  # fmt: skip
    via = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}
    Cli(tmp_path / "a")(*args, env=via)
    chan, idx = rig.channel_url.split("//")[1], rig.index_url.split("//")[1].split("/")[0]
    seen = "\n".join(proxy.seen)
    assert "repodata" in seen and chan in seen  # rattler
    assert f"{idx}/simple/imgb-uses-six" in seen  # uv
    assert ".conda" in seen and ".whl" in seen  # the cache's downloads
    proxy.seen.clear()
    bypass = {**via, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    Cli(tmp_path / "b")(*args, env=bypass)
    assert proxy.seen == []
