"""OCI registries: Debian's `docker-registry` (distribution 2.8) with our own config.

Never the packaged /etc/docker/registry/config.yml (it enables htpasswd and listens on all
interfaces). Each instance keeps its storage and config in DIR/<name>/ and logs to
DIR/logs/<name>.log as JSON lines, one `"msg":"response completed"` line per request with
`http.request.method`, `http.request.uri`, `http.response.status`. Distribution 2.8 logs no
request body sizes; tests/helpers.py `RegistryLog` derives uploaded bytes from the upload
`_state` offsets and the committed blob sizes.

Authentication is pluggable: an `Auth` contributes the `auth:` section, its files and env keys.
`HtpasswdAuth` is Basic auth. A token variant (`auth: token` + a small token server) plugs in
the same way: start the token server in `prepare` (as a process of the registry's service, via
`rig.spawn`), return `{"token": {"realm", "service", "issuer", "rootcertbundle"}}`, and add
its env keys, then list a `Registry("registry_token", "IMGBUILD_RIG_REGISTRY_TOKEN", TokenAuth())`
in ci/rig.py's SERVICES.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Protocol

from services.base import Rig, RigError, http_status, run


class Auth(Protocol):
    def prepare(self, rig: Rig, service: str, folder: Path) -> tuple[dict, dict[str, str]]:
        """Write what the auth needs into `folder`; return (the `auth:` section, env keys)."""
        ...


class HtpasswdAuth:
    """Basic auth from a bcrypt htpasswd file (`htpasswd -Bbn`)."""

    def __init__(self, env_prefix: str, user: str = "imgbuild"):
        self.env_prefix = env_prefix
        self.user = user

    def prepare(self, rig: Rig, service: str, folder: Path) -> tuple[dict, dict[str, str]]:
        password = rig.secret(f"{service}.password")
        if not shutil.which("htpasswd"):
            raise RigError("htpasswd not found (apt-get install apache2-utils; see ci/install.sh)")
        line = run(["htpasswd", "-Bbn", self.user, password]).stdout.strip()
        path = folder / "htpasswd"
        path.write_text(line + "\n")
        section = {"htpasswd": {"realm": "imgbuild-rig", "path": str(path)}}
        return section, {
            f"{self.env_prefix}_USER": self.user,
            f"{self.env_prefix}_PASSWORD": password,
        }


class Registry:
    def __init__(self, name: str, env_key: str, auth: Auth | None = None):
        self.name = name
        self.env_key = env_key
        self.auth = auth

    def _ready(self, port: int) -> bool:
        # /v2/ answers 200 anonymously, 401 behind auth
        return http_status(f"http://127.0.0.1:{port}/v2/") in (200, 401)

    def up(self, rig: Rig) -> dict[str, str]:
        st = rig.service(self.name)
        if rig.alive(self.name) and st.get("env") and self._ready(st["port"]):
            return st["env"]
        rig.stop(self.name)
        exe = shutil.which("docker-registry")
        if not exe:
            raise RigError(
                "docker-registry not found (apt-get install docker-registry; see ci/install.sh)"
            )
        folder = rig.dir / self.name
        (folder / "data").mkdir(parents=True, exist_ok=True)
        port = rig.port(self.name)
        config: dict = {
            "version": 0.1,
            "log": {
                "level": "info",
                "formatter": "json",
                "accesslog": {"disabled": True},
                "fields": {"service": self.name},
            },
            "storage": {
                "filesystem": {"rootdirectory": str(folder / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": rig.secret(f"{self.name}.http")},
        }
        env = {
            self.env_key: f"127.0.0.1:{port}",
            f"{self.env_key}_LOG": str(rig.log(self.name)),
            f"{self.env_key}_DATA": str(folder / "data"),
        }
        if self.auth:
            section, auth_env = self.auth.prepare(rig, self.name, folder)
            config["auth"] = section
            env.update(auth_env)
        cfg = folder / "config.yml"
        cfg.write_text(json.dumps(config, indent=1) + "\n")  # JSON is YAML
        # REGISTRY_* variables override the config file: never inherit them
        penv = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        rig.spawn(self.name, [exe, "serve", str(cfg)], env=penv)
        rig.wait_for(
            self.name, lambda: self._ready(port), f"http://127.0.0.1:{port}/v2/", timeout=20
        )
        rig.update(self.name, port=port, env=env)
        return env
