"""Credentials for private channels, indexes and stores: found per host, never recorded.

Where they come from, most specific first:
1. URLs this process was given with credentials in them (`https://user:pw@host/...`, conda's
   `/t/<token>/`): `remember(url)` keeps them in memory for this process only;
2. `[auth."HOST"]` tables of ./imgbuild.toml and ~/.config/imgbuild/config.toml
   (`username` + `password`, or `token`; `password_env` / `token_env` name an environment
   variable instead, so the file need not hold the secret);
3. credentials inside the configured `index_url` / `channels` (pip.conf, PIP_INDEX_URL, ...);
4. ~/.netrc (or the file $NETRC names).
A key may be `host`, `host:port` or `*.domain`; the longest match wins.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from imagebuilder.errors import BadInput


@dataclass(frozen=True)
class Credential:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    conda_token: str | None = field(default=None, repr=False)  # anaconda.org style /t/<token>/
    source: str = ""

    def __repr__(self) -> str:  # secrets never reach logs through repr()
        kind = "token" if self.token else "conda-token" if self.conda_token else "basic"
        return f"Credential({kind}, user={self.username!r}, from {self.source})"

    @property
    def basic(self) -> tuple[str, str] | None:
        if self.username is not None and self.password is not None:
            return self.username, self.password
        return None

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.token, self.conda_token) if s]


_REMEMBERED: dict[str, Credential] = {}
_LOCK = threading.Lock()


def host_key(url: str) -> str:
    """'https://u:p@Host:8443/x' -> 'host:8443' (port kept only when given)."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def remember(url: str) -> None:
    """Keep the credentials a URL carries for this process (they are stripped from records)."""
    cred = from_url(url)
    if cred is not None:
        with _LOCK:
            _REMEMBERED[host_key(url)] = cred


def forget_all() -> None:
    with _LOCK:
        _REMEMBERED.clear()


def from_url(url: str) -> Credential | None:
    if "://" not in url:
        return None
    parts = urlsplit(url)
    segs = parts.path.split("/")
    if "t" in segs:
        i = segs.index("t")
        if i + 1 < len(segs) and segs[i + 1]:
            return Credential(conda_token=segs[i + 1], source="URL")
    if parts.username is not None and parts.password is not None:
        return Credential(unquote(parts.username), unquote(parts.password), source="URL")
    if parts.username and not parts.scheme.endswith("ssh"):
        return Credential(token=unquote(parts.username), source="URL")
    return None


def _config_entries(cwd: Path | None, home: Path | None, environ) -> dict[str, Credential]:
    from imagebuilder.config import auth_tables

    out: dict[str, Credential] = {}
    # Lowest precedence first, so the more specific file overwrites.
    for source, host, table in reversed(auth_tables(cwd=cwd, home=home, environ=environ)):
        out[host.lower()] = _credential_from_table(host, table, source, environ)
    return out


def _credential_from_table(host: str, t: dict, source: str, environ) -> Credential:
    def secret(name: str) -> str | None:
        if t.get(f"{name}_env"):
            var = t[f"{name}_env"]
            if var not in environ:
                raise BadInput(
                    f"{source}: [auth.{host!r}] {name}_env names ${var}, which is not set",
                    f"export {var}=... or put {name} in the file",
                )
            return environ[var]
        return t.get(name)

    unknown = set(t) - {"username", "password", "token", "password_env", "token_env", "conda"}
    if unknown:
        raise BadInput(
            f"{source}: [auth.{host!r}] has unknown keys: {', '.join(sorted(unknown))}",
            "use username + password (or password_env), or token (or token_env)",
        )
    token = secret("token")
    if token and t.get("conda"):
        return Credential(conda_token=token, source=source)
    return Credential(t.get("username"), secret("password"), token, source=source)


def _configured_urls(cwd: Path | None, home: Path | None, environ) -> dict[str, Credential]:
    """Credentials inside the configured `index_url` / `channels` (an index URL from pip.conf
    or PIP_INDEX_URL often carries them): used for those hosts, never shown or stored."""
    from imagebuilder.config import load_config

    cfg = load_config(environ=environ, cwd=cwd, home=home)
    out: dict[str, Credential] = {}
    for key in ("channels", "index_url"):
        raw = cfg.get(key)
        for url in raw if isinstance(raw, list | tuple) else [raw] if raw else []:
            cred = from_url(str(url))
            if cred is not None:
                out.setdefault(
                    host_key(str(url)), Credential(**{**cred.__dict__, "source": cfg.source(key)})
                )
    return out


def _netrc(environ, home: Path | None) -> tuple[str, object] | None:
    import netrc

    path = Path(environ.get("NETRC") or (home or Path.home()) / ".netrc")
    if not path.is_file():
        return None
    try:
        return str(path), netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError) as e:
        raise BadInput(f"cannot read {path}: {e}", "fix the file's syntax") from None


def _match(table: dict[str, Credential], key: str) -> Credential | None:
    host = key.split(":")[0]
    if key in table:
        return table[key]
    if host in table:
        return table[host]
    wild = [k for k in table if k.startswith("*.") and host.endswith(k[1:])]
    return table[max(wild, key=len)] if wild else None


def lookup(
    url: str, *, cwd: Path | None = None, home: Path | None = None, environ=None
) -> Credential | None:
    """The credential for a URL, or None (anonymous)."""
    env = os.environ if environ is None else environ
    key = host_key(url)
    in_url = from_url(url)
    if in_url is not None:
        return in_url
    with _LOCK:
        found = _match(dict(_REMEMBERED), key)
    if found is not None:
        return found
    found = _match(_config_entries(cwd, home, env), key)
    if found is not None:
        return found
    found = _match(_configured_urls(cwd, home, env), key)
    if found is not None:
        return found
    rc = _netrc(env, home)
    if rc is not None:
        path, parsed = rc
        auth = parsed.authenticators(key) or parsed.authenticators(key.split(":")[0])
        if auth:
            login, _, password = auth
            return Credential(login or None, password or None, source=path)
    return None


def all_known(*, cwd=None, home=None, environ=None) -> dict[str, Credential]:
    """Every host with credentials (for writing tools' auth files, and for `config show`)."""
    env = os.environ if environ is None else environ
    out: dict[str, Credential] = {}
    rc = _netrc(env, home)
    if rc is not None:
        path, parsed = rc
        for host, (login, _, password) in parsed.hosts.items():
            out[host.lower()] = Credential(login or None, password or None, source=path)
    out.update(_config_entries(cwd, home, env))
    with _LOCK:
        out.update(_REMEMBERED)
    return out


def secrets_known(**kw) -> list[str]:
    """Every secret value this process knows: tests and log scrubbing check output for them."""
    return sorted({s for c in all_known(**kw).values() for s in c.secrets()})
