"""Private channels, indexes and networks: credentials, CA bundles, proxies, user defaults.

The one place the rest of imgbuild asks, so every client (rattler, uv, requests, boto3, the
registry client) sees the same credentials and trusts the same CAs:

- `remember(url)`: keep the credentials of a URL the user typed, for this process only;
- `channel_auth(url)` / `index_auth(url)`: the URL to hand to rattler / uv, credentials put back
  (user:password@ or conda's /t/<token>/); `url_with_credentials` is the same for any download;
- `index_env(urls)`: environment for a uv subprocess (CA bundle, proxies, credentials for the
  hosts of `urls` through a private netrc file that lives as long as the `with` block);
- `ca_bundle()` and `setup_process_env()`: one CA bundle for all clients (sources/tls.py);
- `requests_session()`: a requests Session with per-host auth, the CA bundle and retries;
- `rattler_client()`: a py-rattler Client whose auth middleware sees our credentials.

Records, logs and messages never see a credential: callers strip URLs (urls.strip_credentials)
before storing them and redact (urls.redact) any text from a client before printing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

from imagebuilder.sources.credentials import Credential, forget_all, lookup, remember
from imagebuilder.sources.tls import ca_bundle, proxy_settings, setup_process_env

__all__ = [
    "Credential",
    "ca_bundle",
    "channel_auth",
    "forget_all",
    "index_auth",
    "index_env",
    "lookup",
    "proxy_settings",
    "rattler_client",
    "remember",
    "requests_session",
    "setup_process_env",
    "url_with_credentials",
]


def url_with_credentials(url: str) -> str:
    """`url` with the credentials we know for its host put back (unchanged if none or if the
    only credential is a bearer token, which a URL cannot carry: see requests_session)."""
    from imagebuilder.urls import strip_credentials

    if "://" not in url or url.startswith("file:"):
        return url
    cred = lookup(url)
    if cred is None:
        return url
    clean = strip_credentials(url) if "@" in urlsplit(url).netloc else url
    parts = urlsplit(clean)
    if cred.conda_token:
        path = parts.path
        if not path.startswith("/t/"):
            path = f"/t/{cred.conda_token}{path}"
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
    if cred.basic:
        user, password = cred.basic
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def channel_auth(url: str) -> str:
    """The channel URL for rattler, with credentials when we know some."""
    return url_with_credentials(url)


def index_auth(url: str) -> str:
    """The index / find-links URL for uv, with credentials when we know some."""
    return url_with_credentials(url)


@contextlib.contextmanager
def index_env(urls: list[str] | tuple[str, ...] = ()) -> Iterator[dict[str, str]]:
    """Environment additions for a uv subprocess: CA bundle and, for the hosts of `urls`,
    credentials in a private netrc (so they are not on uv's command line). The file is removed
    when the block ends."""
    env: dict[str, str] = {}
    bundle = ca_bundle()
    if bundle:
        env["SSL_CERT_FILE"] = bundle
    entries = []
    for url in urls:
        cred = lookup(url)
        if cred is not None and cred.basic:
            host = urlsplit(url).hostname or ""
            entries.append((host, *cred.basic))
        elif cred is not None and cred.token:
            entries.append((urlsplit(url).hostname or "", "__token__", cred.token))
    if not entries:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="imgbuild-netrc-") as d:
        path = os.path.join(d, "netrc")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            for host, user, password in entries:
                f.write(f"machine {host}\nlogin {user}\npassword {password}\n")
            user_netrc = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
            if os.path.isfile(user_netrc):  # keep the user's other hosts working
                with open(user_netrc) as u:
                    f.write("\n" + u.read())
        env["NETRC"] = path
        yield env


def requests_session(retries: int = 3):
    """A requests Session: per-host credentials, one CA bundle, proxies from the environment,
    retries on 429/5xx. Credentials are applied per request, so a redirect to another host
    never carries them."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    s = requests.Session()
    s.auth = _HostAuth()
    bundle = ca_bundle()
    if bundle:
        s.verify = bundle
    retry = Retry(total=retries, backoff_factor=0.3, status_forcelist=(429, 500, 502, 503, 504))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    s.mount("http://", HTTPAdapter(max_retries=retry))
    return s


class _HostAuth:
    """requests auth hook: Basic or Bearer for the request's host, from `lookup`."""

    def __call__(self, r):
        import base64

        if "Authorization" in r.headers:
            return r
        cred = lookup(r.url)
        if cred is None:
            return r
        if cred.basic:
            raw = f"{cred.basic[0]}:{cred.basic[1]}".encode()
            r.headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif cred.token:
            r.headers["Authorization"] = f"Bearer {cred.token}"
        return r


def rattler_client():
    """A py-rattler Client with its auth middleware fed from our credentials.

    rattler's default Gateway client does not authenticate; `Client.default_client()` does,
    reading $RATTLER_AUTH_FILE (and netrc) when it is built. The auth file is written to a
    private temp folder, read by the client, and removed before this returns.
    """
    from rattler import Client

    from imagebuilder.sources.credentials import all_known

    setup_process_env()
    known = all_known()
    if not known:
        return Client.default_client()
    table = {}
    for host, cred in known.items():
        key = host.split(":")[0]
        if cred.basic:
            table[key] = {"BasicHTTP": {"username": cred.basic[0], "password": cred.basic[1]}}
        elif cred.token:
            table[key] = {"BearerToken": cred.token}
        elif cred.conda_token:
            table[key] = {"CondaToken": cred.conda_token}
    old = os.environ.get("RATTLER_AUTH_FILE")
    with tempfile.TemporaryDirectory(prefix="imgbuild-auth-") as d:
        path = os.path.join(d, "auth.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(table, f)
        os.environ["RATTLER_AUTH_FILE"] = path
        try:
            return Client.default_client()
        finally:
            if old is None:
                os.environ.pop("RATTLER_AUTH_FILE", None)
            else:
                os.environ["RATTLER_AUTH_FILE"] = old
