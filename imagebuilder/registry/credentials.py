"""Registry credentials from the files users already have, the way docker/podman read them.

Order for a registry host (first hit wins):
1. `REGISTRY_AUTH_FILE` (podman/skopeo auth.json), else `$XDG_RUNTIME_DIR/containers/auth.json`;
2. `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `credHelpers[host]`, then
   `auths[host]` (base64 `auth`, or `username`/`password`, or `identitytoken`), then `credsStore`;
3. Amazon ECR hosts (`<account>.dkr.ecr.<region>.amazonaws.com`): a token from boto3.

A helper is run as `docker-credential-<name> get` with the server on stdin (the docker
credential-helper protocol). `Credential.source` names where a credential came from, for
messages; the secret itself is never part of any message or repr.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.errors import BadInput
from imagebuilder.registry.reference import DOCKER_HUB

ECR_HOST_RE = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
HELPER_TIMEOUT = 30


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)
    source: str  # e.g. "~/.docker/config.json auths", "docker-credential-pass (credHelpers)"
    identity_token: bool = False  # password is an OAuth2 refresh token (docker's <token> user)

    def __str__(self) -> str:
        return f"credentials of {self.username!r} from {self.source}"


@dataclass(frozen=True)
class Lookup:
    """What a lookup found, and every source it tried (for 'no credentials' messages)."""

    credential: Credential | None
    tried: tuple[str, ...]


def host_key(server: str) -> str:
    """Normalize a config key or server URL to host[:port] (docker keys Hub by an old URL)."""
    s = server.strip()
    s = re.sub(r"^[a-z]+://", "", s)
    s = s.split("/", 1)[0]
    if s in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DOCKER_HUB
    return s


def _server_url(host: str) -> str:
    return "https://index.docker.io/v1/" if host == DOCKER_HUB else host


def find_credential(host: str, environ: Mapping[str, str] | None = None) -> Lookup:
    """Credentials for a registry host (host[:port]) from the standard sources; see module doc."""
    env = os.environ if environ is None else environ
    host = host_key(host)
    tried: list[str] = []
    for path in _auth_files(env):
        tried.append(_display(path, env))
        cred = _from_config_file(path, host, env)
        if cred:
            return Lookup(cred, tuple(tried))
    m = ECR_HOST_RE.match(host)
    if m:
        tried.append("Amazon ECR (boto3)")
        from imagebuilder.registry.ecr import ecr_credential

        return Lookup(ecr_credential(m.group(2), m.group(1)), tuple(tried))
    return Lookup(None, tuple(tried))


def _auth_files(env: Mapping[str, str]) -> list[Path]:
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]).expanduser())
    elif env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = Path(env.get("HOME") or Path.home())
    docker_dir = Path(env["DOCKER_CONFIG"]).expanduser() if env.get("DOCKER_CONFIG") else None
    files.append((docker_dir or home / ".docker") / "config.json")
    return files


def _display(path: Path, env: Mapping[str, str]) -> str:
    home = env.get("HOME")
    s = str(path)
    return "~" + s[len(home) :] if home and s.startswith(home.rstrip("/") + "/") else s


def _from_config_file(path: Path, host: str, env: Mapping[str, str]) -> Credential | None:
    if not path.is_file():
        return None
    shown = _display(path, env)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(
            f"cannot read registry credentials file {shown}: {type(e).__name__}",
            "fix or remove the file",
        ) from None
    if not isinstance(data, dict):
        raise BadInput(f"registry credentials file {shown} is not a JSON object")
    helpers = {host_key(k): v for k, v in (data.get("credHelpers") or {}).items()}
    if host in helpers:
        return run_helper(helpers[host], host, f"{shown} credHelpers")
    auths = {host_key(k): v for k, v in (data.get("auths") or {}).items()}
    entry = auths.get(host)
    if isinstance(entry, dict):
        cred = _from_auth_entry(entry, f"{shown} auths")
        if cred:
            return cred
    if data.get("credsStore"):
        return run_helper(data["credsStore"], host, f"{shown} credsStore")
    return None


def _from_auth_entry(entry: dict, source: str) -> Credential | None:
    if entry.get("identitytoken"):
        return Credential("<token>", str(entry["identitytoken"]), source, identity_token=True)
    if entry.get("auth"):
        try:
            raw = base64.b64decode(entry["auth"]).decode()
        except (ValueError, UnicodeDecodeError):
            raise BadInput(
                f"bad 'auth' value in {source}: not base64 of user:password",
                "log in again (docker login / podman login)",
            ) from None
        user, sep, password = raw.partition(":")
        if not sep:
            raise BadInput(f"bad 'auth' value in {source}: no ':' between user and password")
        return Credential(user, password, source)
    if entry.get("username") and entry.get("password"):
        return Credential(str(entry["username"]), str(entry["password"]), source)
    return None


def run_helper(name: str, host: str, where: str) -> Credential | None:
    """`docker-credential-<name> get`: server on stdin, JSON {Username, Secret} on stdout."""
    exe = f"docker-credential-{name}"
    source = f"{exe} ({where})"
    try:
        proc = subprocess.run(
            [exe, "get"],
            input=_server_url(host),
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT,
        )
    except FileNotFoundError:
        raise BadInput(
            f"credential helper {exe} named in {where} is not on PATH",
            f"install {exe} or remove it from the config",
        ) from None
    except subprocess.TimeoutExpired:
        raise BadInput(f"credential helper {exe} did not answer in {HELPER_TIMEOUT} s") from None
    if proc.returncode != 0:
        # The protocol's "no credentials" answer; anything else is a helper failure, reported
        # without its output (a helper may echo what it was given).
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise BadInput(
            f"credential helper {exe} failed for {host} (exit {proc.returncode})",
            f"run `echo {_server_url(host)} | {exe} get` to see why",
        )
    try:
        data = json.loads(proc.stdout)
        user, secret = str(data.get("Username") or ""), str(data["Secret"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BadInput(f"credential helper {exe} printed something that is not its JSON") from None
    if user == "<token>":
        return Credential(user, secret, source, identity_token=True)
    return Credential(user, secret, source)
