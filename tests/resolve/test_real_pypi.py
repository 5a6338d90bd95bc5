"""Against the real PyPI (https://pypi.org/simple, the default index). Marked `internet` so it
can be deselected offline (-m 'not internet'); CI runs it. Python comes from the rig channel."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.rig, pytest.mark.internet]


@pytest.mark.parametrize("arch", ["linux-64", "osx-arm64"])
def test_pure_pypi_from_real_pypi(cli, rig_services, arch):
    doc = cli("resolve", "--pypi", "requests[socks]", "-c", rig_services.channel_url,
              "--arch", arch, "--exclude-newer", "2024-06-01", "--json", "--dry-run").json()  # fmt: skip
    pypi = {p["name"]: p for p in doc["packages"] if p["kind"] == "pypi"}
    assert pypi["requests"]["version"] == "2.32.3"  # the newest release before 2024-06-01
    assert {"urllib3", "idna", "certifi", "charset-normalizer", "pysocks"} <= set(pypi)
    for p in pypi.values():
        assert p["url"].startswith("https://files.pythonhosted.org/") and len(p["sha256"]) == 64
        assert p["extra"]["upload_time"] < "2024-06-01"
    cn = pypi["charset-normalizer"]
    assert cn["subdir"] == arch
    assert (
        ("macosx" in cn["build"] and "arm64" in cn["build"])
        if arch == "osx-arm64"
        else ("manylinux" in cn["build"] and "x86_64" in cn["build"])
    )
    conda = {p["name"] for p in doc["packages"] if p["kind"] == "conda"}
    assert "python" in conda and not conda & set(pypi)
