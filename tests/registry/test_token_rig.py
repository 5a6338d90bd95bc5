"""The rig's `auth: token` variant (ci/services/registry_token.TokenAuth) through the rig's own
Registry service class: token server process + docker-registry trusting its certificate."""

from __future__ import annotations

import base64
import json
import sys

from regkit import ROOT, blob

from imagebuilder.registry.client import RegistryClient
from imagebuilder.registry.upload import upload_blob


def test_token_auth_plugs_into_the_rig(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "ci"))
    from services.base import Rig
    from services.registry import Registry

    from ci.services.registry_token import TokenAuth

    rig = Rig(tmp_path / "rig")
    service = Registry(
        "registry_token", "IMGBUILD_RIG_REGISTRY_TOKEN", TokenAuth("IMGBUILD_RIG_REGISTRY_TOKEN")
    )
    try:
        env = service.up(rig)
        host = env["IMGBUILD_RIG_REGISTRY_TOKEN"]
        auth = tmp_path / "auth.json"
        cred = f"{env['IMGBUILD_RIG_REGISTRY_TOKEN_USER']}:{env['IMGBUILD_RIG_REGISTRY_TOKEN_PASSWORD']}"
        auth.write_text(
            json.dumps({"auths": {host: {"auth": base64.b64encode(cred.encode()).decode()}}})
        )
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
        c = RegistryClient(host, insecure=True)
        d, n, op = blob(b"through the rig's token registry")
        assert upload_blob(c, "rig/token", d, n, op) == n and c.blob_exists("rig/token", d)
        assert env["IMGBUILD_RIG_REGISTRY_TOKEN_REALM"].endswith("/token")
    finally:
        assert rig.stop("registry_token") == []
