"""Configuration precedence over every source CONTRACT.md names, and `config show` masking.

flag > IMGBUILD_<KEY> > METAFLOW_IMGBUILD_<KEY> > ./imgbuild.toml > ~/.config/imgbuild/config.toml
> Metaflow config file > (conda/pip/uv settings, for channels and index_url) > built-in default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from interop_support import Cli

from imagebuilder.config import KEYS, load_config

LEVELS = ["flag", "env", "env-metaflow", "local", "user", "metaflow", "default"]


def _setup(tmp: Path, key: str, levels: list[str]):
    """Put a distinct value for `key` at each of `levels`; return (flags, environ, cwd, home)."""
    home, cwd = tmp / "home", tmp / "proj"
    (home / ".config" / "imgbuild").mkdir(parents=True, exist_ok=True)
    (home / ".metaflowconfig").mkdir(parents=True, exist_ok=True)
    cwd.mkdir(exist_ok=True)
    flags, environ = {}, {"HOME": str(home)}
    for level in levels:
        value = f"{level}-value"
        if level == "flag":
            flags[key] = value
        elif level == "env":
            environ[f"IMGBUILD_{key.upper()}"] = value
        elif level == "env-metaflow":
            environ[f"METAFLOW_IMGBUILD_{key.upper()}"] = value
        elif level == "local":
            (cwd / "imgbuild.toml").write_text(f'{key} = "{value}"\n[environment]\nconda = ["x"]\n')
        elif level == "user":
            (home / ".config" / "imgbuild" / "config.toml").write_text(f'{key} = "{value}"\n')
        elif level == "metaflow":
            (home / ".metaflowconfig" / "config.json").write_text(
                json.dumps(
                    {f"METAFLOW_IMGBUILD_{key.upper()}": value, "METAFLOW_DEFAULT_DATASTORE": "s3"}
                )
            )
    return flags, environ, cwd, home


@pytest.mark.parametrize("key", [k for k in KEYS if k != "s3_endpoint_url"] + ["s3_endpoint_url"])
def test_every_key_follows_the_contract_order(tmp_path, key):
    for i, top in enumerate(LEVELS[:-1]):
        flags, environ, cwd, home = _setup(tmp_path / f"{key}-{i}", key, LEVELS[i:-1])
        cfg = load_config(flags=flags, environ=environ, cwd=cwd, home=home)
        assert cfg.get(key) == f"{top}-value", (key, top)
        label = cfg.source(key)
        expect = {
            "flag": "flag",
            "env": f"env IMGBUILD_{key.upper()}",
            "env-metaflow": f"env METAFLOW_IMGBUILD_{key.upper()}",
            "local": str(cwd / "imgbuild.toml"),
            "user": str(home / ".config" / "imgbuild" / "config.toml"),
            "metaflow": str(home / ".metaflowconfig" / "config.json"),
        }[top]
        assert label == expect
    cfg = load_config(flags={}, environ={"HOME": str(tmp_path)}, cwd=tmp_path, home=tmp_path)
    assert cfg.source(key) == "default"


def test_metaflow_profile_and_home(tmp_path):
    mf = tmp_path / "mfhome"
    mf.mkdir()
    (mf / "config_prod.json").write_text(
        json.dumps({"METAFLOW_IMGBUILD_REGISTRY": "r.example/prod"})
    )
    env = {"HOME": str(tmp_path), "METAFLOW_HOME": str(mf), "METAFLOW_PROFILE": "prod"}
    cfg = load_config(environ=env, cwd=tmp_path, home=tmp_path)
    assert cfg.get("registry") == "r.example/prod"
    assert cfg.source("registry") == str(mf / "config_prod.json")


def test_s3_endpoint_falls_back_to_metaflow_then_aws_variables(tmp_path):
    env = {
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": "http://aws",
        "METAFLOW_S3_ENDPOINT_URL": "http://mf",
    }
    cfg = load_config(environ=env, cwd=tmp_path, home=tmp_path)
    assert (cfg.get("s3_endpoint_url"), cfg.source("s3_endpoint_url")) == (
        "http://mf",
        "env METAFLOW_S3_ENDPOINT_URL",
    )
    del env["METAFLOW_S3_ENDPOINT_URL"]
    assert (
        load_config(environ=env, cwd=tmp_path, home=tmp_path).get("s3_endpoint_url") == "http://aws"
    )


def test_conda_pip_and_uv_settings_sit_between_metaflow_and_default(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".condarc").write_text("channels:\n  - https://conda.example.org/team\n  - defaults\n")
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nindex-url = https://pip.example/simple\n"
    )
    env = {"HOME": str(home), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    cfg = load_config(environ=env, cwd=tmp_path, home=home)
    assert cfg.get("channels") == ["https://conda.example.org/team"]
    assert cfg.source("channels") == str(home / ".condarc")
    assert cfg.get("index_url") == "https://pip.example/simple"
    # uv.toml is more specific than pip.conf, PIP_INDEX_URL more than both
    (home / ".config" / "uv").mkdir()
    (home / ".config" / "uv" / "uv.toml").write_text(
        '[[index]]\nurl = "https://uv.example/simple"\ndefault = true\n'
    )
    assert (
        load_config(environ=env, cwd=tmp_path, home=home).get("index_url")
        == "https://uv.example/simple"
    )
    env["PIP_INDEX_URL"] = "https://env.example/simple"
    cfg = load_config(environ=env, cwd=tmp_path, home=home)
    assert (cfg.get("index_url"), cfg.source("index_url")) == (
        "https://env.example/simple",
        "env PIP_INDEX_URL",
    )
    # ... and imgbuild's own config wins over all of them
    (home / ".config" / "imgbuild").mkdir()
    (home / ".config" / "imgbuild" / "config.toml").write_text(
        'index_url = "https://mine/simple"\nchannels = ["https://mine/chan"]\n'
    )
    cfg = load_config(environ=env, cwd=tmp_path, home=home)
    assert cfg.get("index_url") == "https://mine/simple" and cfg.channels == ("https://mine/chan",)


SECRETS = ["s3cret-idx", "s3cret-auth", "s3cret-tok", "s3cret-netrc", "s3cret-proxy", "s3cret-chan"]


def test_config_show_lists_every_source_and_masks_secrets(tmp_path):
    cli = Cli(tmp_path)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "imgbuild.toml").write_text(
        'index_url = "https://alice:s3cret-idx@pypi.example.org/simple"\n'
        'channels = ["https://conda.example.org/t/s3cret-chan/team"]\n'
        '[auth."conda.example.org"]\nusername = "ci"\npassword = "s3cret-auth"\n'
        '[auth."*.example.net"]\ntoken = "s3cret-tok"\n'
    )
    (cli.home / ".netrc").write_text("machine files.example.com login bob password s3cret-netrc\n")
    (cli.home / ".netrc").chmod(0o600)
    env = {
        "IMGBUILD_STORE": None,
        "METAFLOW_IMGBUILD_REGISTRY": "registry.example.com/team",
        "HTTPS_PROXY": "http://proxyuser:s3cret-proxy@proxy.example:3128",
        "NO_PROXY": "localhost,127.0.0.1",
    }
    human = cli("config", "show", "--store", "/flag/store", env=env, cwd=proj)
    data = cli("config", "show", "--json", "--store", "/flag/store", env=env, cwd=proj).json()
    for out in (human.stdout + human.stderr, json.dumps(data)):
        for s in SECRETS:
            assert s not in out, s
    rows = {r["key"]: r for r in data["config"]}
    assert rows["store"]["source"] == "flag" and rows["store"]["value"] == "/flag/store"
    assert rows["registry"]["source"] == "env METAFLOW_IMGBUILD_REGISTRY"
    assert rows["index_url"]["value"] == "https://***@pypi.example.org/simple"
    assert rows["index_url"]["source"] == str(proj / "imgbuild.toml")
    assert rows["channels"]["value"] == ["https://conda.example.org/t/***/team"]
    assert rows["auth.conda.example.org.password"]["value"] == "***"
    assert rows["auth.conda.example.org.username"]["value"] == "ci"
    assert rows["auth.*.example.net.token"]["value"] == "***"
    assert rows["auth.files.example.com"]["source"] == str(cli.home / ".netrc")
    assert rows["proxy.https_proxy"]["value"] == "http://***@proxy.example:3128"
    assert rows["oci_dir"]["source"] == "default"
    assert "/flag/store" in human.stdout and "(flag)" in human.stdout


def test_auth_table_errors_are_clear(tmp_path):
    cli = Cli(tmp_path)
    (tmp_path / "imgbuild.toml").write_text('[auth."h.example"]\npasswd = "x"\n')
    from imagebuilder.sources import credentials

    with pytest.raises(Exception, match="unknown keys: passwd"):
        credentials.lookup("https://h.example/x", cwd=tmp_path, home=cli.home, environ={})
    (tmp_path / "imgbuild.toml").write_text(
        '[auth."h.example"]\nusername = "u"\npassword_env = "NOPE_PW"\n'
    )
    with pytest.raises(Exception, match=r"\$NOPE_PW, which is not set"):
        credentials.lookup("https://h.example/x", cwd=tmp_path, home=cli.home, environ={})
    cred = credentials.lookup(
        "https://h.example/x", cwd=tmp_path, home=cli.home, environ={"NOPE_PW": "pw"}
    )
    assert cred.basic == ("u", "pw") and "pw" not in repr(cred)


def test_ca_bundles_are_joined_for_every_client(tmp_path, pki):
    from imagebuilder.sources import tls

    other = tmp_path / "other.pem"
    other.write_text(pki.ca.read_text().replace("imgbuild", "other"))  # distinct bytes
    env = {"SSL_CERT_FILE": str(pki.ca), "REQUESTS_CA_BUNDLE": str(other)}
    bundle = tls.setup_process_env(env)
    assert bundle and Path(bundle).read_text().count("BEGIN CERTIFICATE") == 2
    assert {env[v] for v in tls.SET_VARS} == {bundle}
    one = {"REQUESTS_CA_BUNDLE": str(pki.ca)}
    assert tls.setup_process_env(one) == str(pki.ca) and one["SSL_CERT_FILE"] == str(pki.ca)
    assert tls.setup_process_env({}) is None
