"""Resolve + cache from a conda channel and a PyPI index that need credentials and are served
over TLS with a test CA; no secret in any record, log or output.

The channel is the rig's channel folder behind tls_server.py (basic auth, HTTPS); the index is
the rig's index folder behind ci/pypi/serve.py --auth --certfile. They sit on two host names
(127.0.0.1 and localhost) so per-host credentials are really per host.
"""

from __future__ import annotations

import json
import sys

import pytest
from interop_support import ROOT, Cli, Server, env_ref, secrets_in_tree, tls_file_server

CHAN_PW = "chan-s3cret-PW"
IDX_PW = "idx-s3cret-PW"
SECRETS = [CHAN_PW, IDX_PW]
REQUEST = ["--conda", "tinybar", "--conda", "python=3.11", "--pypi", "imgb-uses-six"]


@pytest.fixture(scope="module")
def private(rig, pki, tmp_path_factory):
    rig.need("channel_dir", "index_dir")
    logs = tmp_path_factory.mktemp("private-logs")
    chan = tls_file_server(rig.channel_dir, pki, f"alice:{CHAN_PW}", logs)
    idx = Server(
        [sys.executable, str(ROOT / "ci/pypi/serve.py"), "--root", rig.index_dir, "--auth",
         f"bob:{IDX_PW}", "--certfile", str(pki.cert), "--keyfile", str(pki.key)],
        logs / "index.log",
        first_line=True,
    )  # fmt: skip
    try:
        yield {
            "channel": chan.url,  # https://127.0.0.1:PORT
            "index": idx.url.replace("127.0.0.1", "localhost"),  # https://localhost:PORT/simple
            "logs": logs,
            "ca": pki.ca,
        }
    finally:
        chan.stop()
        idx.stop()


def _no_secret_anywhere(cli: Cli, results, private) -> None:
    for r in results:
        for s in SECRETS:
            assert s not in r.stdout and s not in r.stderr, (r.args, s)
    assert secrets_in_tree(cli.store, SECRETS) == []
    assert secrets_in_tree(private["logs"], SECRETS) == []


def _check_env(cli: Cli, env: dict) -> None:
    names = {p["name"] for p in env["packages"]}
    assert {"tinybar", "tinyfoo", "python", "imgb-uses-six", "six"} <= names
    for p in env["packages"]:
        assert "@" not in p["url"].split("//", 1)[1].split("/", 1)[0]  # no user:pw@ in records
        assert (cli.store / "pkgs" / p["kind"] / p["sha256"] / p["filename"]).is_file()


def test_credentials_typed_in_urls(private, tmp_path):
    cli = Cli(tmp_path)
    ch = private["channel"].replace("https://", f"https://alice:{CHAN_PW}@")
    ix = private["index"].replace("https://", f"https://bob:{IDX_PW}@")
    env = {"SSL_CERT_FILE": private["ca"], "REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None}
    r = cli(
        "resolve", *REQUEST, "-c", ch, "--index-url", ix, "--arch", "linux-64", "--json", env=env
    )
    got = r.json()
    _check_env(cli, got)
    shown = cli("show", env_ref(got), "--json", env=env)
    exported = cli("export", env_ref(got), "--format", "conda-lock", env=env)
    _no_secret_anywhere(cli, [r, shown, exported], private)
    assert private["channel"] in exported.stdout  # the URL is kept, without its credentials


def test_credentials_from_config_and_netrc_and_ca_from_requests_bundle(private, tmp_path):
    """Channel: [auth."127.0.0.1"] in the user config, password from an env variable; index:
    ~/.netrc; CA: only REQUESTS_CA_BUNDLE set (imgbuild gives it to rattler and uv too)."""
    cli = Cli(tmp_path)
    cfg = cli.home / ".config" / "imgbuild"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        '[auth."127.0.0.1"]\nusername = "alice"\npassword_env = "TEAM_CHANNEL_PW"\n'
    )
    (cli.home / ".netrc").write_text(f"machine localhost\nlogin bob\npassword {IDX_PW}\n")
    (cli.home / ".netrc").chmod(0o600)
    env = {
        "REQUESTS_CA_BUNDLE": private["ca"],
        "SSL_CERT_FILE": None,
        "CURL_CA_BUNDLE": None,
        "TEAM_CHANNEL_PW": CHAN_PW,
    }
    args = [*REQUEST, "-c", private["channel"], "--index-url", private["index"]]
    r = cli("resolve", *args, "--arch", "linux-64", "--json", env=env)
    got = r.json()
    _check_env(cli, got)
    shown = cli("config", "show", "--json", env=env)
    rows = {row["key"]: row for row in shown.json()["config"]}
    assert rows["auth.127.0.0.1.password_env"]["value"] == "TEAM_CHANNEL_PW"
    assert rows["auth.localhost"]["value"].startswith("***")
    _no_secret_anywhere(cli, [r, shown], private)


def test_missing_credentials_fail_clearly(private, tmp_path):
    cli = Cli(tmp_path)
    env = {"SSL_CERT_FILE": private["ca"]}
    r = cli("resolve", "--conda", "tinybar", "-c", private["channel"], "--arch", "linux-64",
            "--json", env=env, expect=None)  # fmt: skip
    assert r.returncode in (3, 5), r.stdout + r.stderr
    err = r.json()["error"]
    assert "401" in err["message"] or "credential" in (err["message"] + err["hint"]).lower()
    assert "Traceback" not in r.stderr
    assert not (cli.store / "envs").exists()


def test_unknown_ca_fails_clearly(private, tmp_path):
    cli = Cli(tmp_path)
    ch = private["channel"].replace("https://", f"https://alice:{CHAN_PW}@")
    r = cli("resolve", "--conda", "tinybar", "-c", ch, "--arch", "linux-64", "--json",
            env={"SSL_CERT_FILE": None, "REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None},
            expect=None)  # fmt: skip
    assert r.returncode == 5, r.stdout + r.stderr
    msg = json.dumps(r.json()["error"]).lower()
    assert "certificate" in msg or "tls" in msg or "ssl" in msg
    assert CHAN_PW not in r.stdout + r.stderr


def test_index_and_channels_from_pip_conf_and_condarc_with_their_credentials(private, tmp_path):
    """The request names no index and no channel: pip.conf's index-url (credentials inside)
    and ~/.condarc's channels are used, and their credentials reach uv and the downloads."""
    cli = Cli(tmp_path)
    (cli.home / ".config" / "pip").mkdir(parents=True)
    ix = private["index"].replace("https://", f"https://bob:{IDX_PW}@")
    (cli.home / ".config" / "pip" / "pip.conf").write_text(f"[global]\nindex-url = {ix}\n")
    ch = private["channel"].replace("https://", f"https://alice:{CHAN_PW}@")
    (cli.home / ".condarc").write_text(f"channels:\n  - {ch}\n  - defaults\n")
    env = {"SSL_CERT_FILE": private["ca"], "REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None}
    r = cli("resolve", *REQUEST, "--arch", "linux-64", "--json", env=env)
    got = r.json()
    _check_env(cli, got)
    shown = cli("config", "show", env=env)
    assert "pip.conf" in shown.stdout and ".condarc" in shown.stdout
    _no_secret_anywhere(cli, [r, shown], private)
