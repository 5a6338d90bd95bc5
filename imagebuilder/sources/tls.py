"""Custom CA bundles and proxies, the same for every client we use.

Clients read different variables: requests reads REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, uv and
rattler (rustls) read SSL_CERT_FILE, boto3 reads AWS_CA_BUNDLE. A user sets one of them and
expects all of imgbuild to trust it, so `ca_bundle()` takes every one that is set (and exists)
and, when they name different files, joins them into one bundle; `setup_process_env()` points
all four variables at it, in this process, so every library and every subprocess agrees.
Proxies (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, lower case too) are already read by requests,
boto3, uv and rattler from the environment; `proxy_settings()` reports them for `config show`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

CA_VARS = (
    "IMGBUILD_CA_BUNDLE",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "AWS_CA_BUNDLE",
)
SET_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def ca_sources(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(variable, path) of every CA variable set to an existing file, first-named first."""
    env = os.environ if environ is None else environ
    out, seen = [], set()
    for var in CA_VARS:
        path = env.get(var)
        if path and Path(path).is_file():
            real = str(Path(path).resolve())
            if real not in seen:
                seen.add(real)
                out.append((var, path))
    return out


def ca_bundle(environ: Mapping[str, str] | None = None) -> str | None:
    """One CA bundle file every client should trust, or None (each client's default)."""
    found = ca_sources(environ)
    if not found:
        return None
    if len(found) == 1:
        return found[0][1]
    data = b"".join(Path(p).read_bytes().rstrip(b"\n") + b"\n" for _, p in found)
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"imgbuild-ca-{os.getuid()}-{digest}.pem"
    if not path.is_file():
        from imagebuilder.atomic import write_atomic

        write_atomic(path, data)
    return str(path)


def setup_process_env(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Point every client's CA variable at one bundle (no-op when none is set)."""
    env = os.environ if environ is None else environ
    bundle = ca_bundle(env)
    if bundle:
        for var in SET_VARS:
            env[var] = bundle
    return bundle


def proxy_settings(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """{NAME: (value, variable)} of the proxy settings in effect (upper case wins)."""
    env = os.environ if environ is None else environ
    out = {}
    for var in PROXY_VARS:
        for name in (var, var.lower()):
            if env.get(name):
                out[var] = (env[name], name)
                break
    return out
