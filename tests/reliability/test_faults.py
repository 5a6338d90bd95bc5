"""Transient faults (issue 10, item 4): a fault-injecting proxy (ci/services/fault_proxy.py) in
front of S3 (the rig's seaweedfs), the registry and the conda channel drops connections,
answers 503, sends slow, reset or truncated responses, or drops the answer of a request the
server did apply. Every operation either succeeds after retries or fails with exit 5 and a
one-line message; either way nothing corrupt is stored (checked directly, not through the
proxy): S3 objects hash to their keys, no env record without its packages, every registry tag
reaches complete manifests and blobs, and a failed push leaves no tag.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from relhelp import clean_failure, consistency, open_any, rig_s3_environ, run_table

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # ci.services

from ci.services.fault_proxy import FaultProxy, Rule  # noqa: E402

CATEGORY = "fault-proxy scenarios"
PKG = r"\.(conda|tar\.bz2)$"


@dataclass(frozen=True)
class Scenario:
    id: str
    target: str  # s3 | registry | channel: what the proxy stands in front of
    command: str  # cache | hydrate | push
    rules: tuple[tuple[str, str, str, int], ...]  # (method, path regex, action, times)
    ok: bool  # True: must succeed after retries; False: must fail cleanly (exit 5)
    phrases: tuple[str, ...] = ()


SCENARIOS = [
    # S3 store behind the proxy
    Scenario("s3 PUT package 503 twice", "s3", "cache", (("PUT", "/pkgs/", "503", 2),), True),
    Scenario("s3 PUT package dropped", "s3", "cache", (("PUT", "/pkgs/", "drop", 1),), True),
    Scenario(
        "s3 PUT package applied, answer lost",
        "s3",
        "cache",
        (("PUT", "/pkgs/", "drop-after", 1),),
        True,
    ),  # fmt: skip
    Scenario(
        "s3 PUT env record applied, answer lost",
        "s3",
        "cache",
        (("PUT", "/envs/", "drop-after", 1),),
        True,
    ),  # fmt: skip
    Scenario("s3 PUT alias 503 twice", "s3", "cache", (("PUT", "/aliases/", "503", 2),), True),
    Scenario(
        "s3 PUT alias applied, answer lost",
        "s3",
        "cache",
        (("PUT", "/aliases/", "drop-after", 1),),
        True,
    ),  # fmt: skip
    Scenario("s3 HEAD 503 twice", "s3", "cache", (("HEAD", "/pkgs/", "503", 2),), True),
    Scenario(
        "s3 GET package truncated", "s3", "hydrate", (("GET", "/pkgs/", "truncate", 1),), True
    ),
    Scenario("s3 GET package reset", "s3", "hydrate", (("GET", "/pkgs/", "reset", 1),), True),
    Scenario("s3 GET slow bodies", "s3", "hydrate", (("GET", "/", "slow:1", 3),), True),
    Scenario("s3 GET env record 503", "s3", "hydrate", (("GET", "/envs/", "503", 2),), True),
    Scenario(
        "s3 PUT package always 503",
        "s3",
        "cache",
        (("PUT", "/pkgs/", "503", -1),),
        False,
        ("s3",),
    ),  # fmt: skip
    Scenario("s3 endpoint down", "s3", "cache", (("*", "/", "drop", -1),), False, ("s3",)),
    # the registry behind the proxy
    Scenario(
        "registry blob PUT 503 twice",
        "registry",
        "push",
        (("PUT", "/blobs/uploads/", "503", 2),),
        True,
    ),  # fmt: skip
    Scenario(
        "registry upload POST dropped",
        "registry",
        "push",
        (("POST", "/blobs/uploads/", "drop", 1),),
        True,
    ),  # fmt: skip
    Scenario(
        "registry blob PUT applied, answer lost",
        "registry",
        "push",
        (("PUT", "/blobs/uploads/", "drop-after", 1),),
        True,
    ),  # fmt: skip
    Scenario(
        "registry manifest PUT applied, answer lost",
        "registry",
        "push",
        (("PUT", "/manifests/", "drop-after", 1),),
        True,
    ),  # fmt: skip
    Scenario("registry HEAD reset", "registry", "push", (("HEAD", "/blobs/", "reset", 2),), True),
    Scenario("registry slow answers", "registry", "push", (("*", "/v2/", "slow:0.5", 6),), True),
    Scenario("registry ping 503 once", "registry", "push", (("GET", "^/v2/$", "503", 1),), True),
    Scenario(
        "registry blob PUT always 503",
        "registry",
        "push",
        (("PUT", "/blobs/uploads/", "503", -1),),
        False,
        ("registry",),
    ),  # fmt: skip
    Scenario(
        "registry tag PUT always 503",
        "registry",
        "push",
        (("PUT", r"/manifests/[0-9a-f]{16}$", "503", -1),),
        False,
        ("registry",),
    ),  # fmt: skip
    Scenario("registry down", "registry", "push", (("*", "/", "drop", -1),), False, ("registry",)),
    # the conda channel behind the proxy (package downloads)
    Scenario(
        "channel package truncated twice", "channel", "cache", (("GET", PKG, "truncate", 2),), True
    ),
    Scenario("channel package 503 twice", "channel", "cache", (("GET", PKG, "503", 2),), True),
    Scenario("channel package reset", "channel", "cache", (("GET", PKG, "reset", 1),), True),
    Scenario(
        "channel package always truncated",
        "channel",
        "cache",
        (("GET", PKG, "truncate", -1),),
        False,
        ("could not download", "imgb"),
    ),  # fmt: skip
]


@dataclass(frozen=True)
class Seed:
    store: Path
    full: str


@pytest.fixture(scope="module")
def seed(rig, runner, tmp_path_factory) -> Seed:
    rig.need("channel_url", "registry", "s3_endpoint")
    run = runner(tmp_path_factory.mktemp("faults-seed"))
    r = run("resolve", "-c", rig.channel_url, "--conda", "imgb-cli", "--arch", "linux-64", "--json")
    return Seed(run.store, r.json()["full_id"][:16])


@pytest.fixture(scope="module")
def s3_env(rig):
    # keep retries short: the scenarios wait on backoff otherwise
    with rig_s3_environ(rig, IMGBUILD_FETCH_BACKOFF="0.05") as env:
        yield env


def test_fault_scenarios(rig, seed, s3_env, runner, tmp_path, record):
    def one(sc: Scenario) -> str | None:
        d = tmp_path / sc.id.replace(" ", "-").replace(",", "")
        run = runner(d)
        upstream = {
            "s3": rig.s3_endpoint.split("//", 1)[1],
            "registry": rig.registry,
            "channel": rig.channel_url.split("//", 1)[1],
        }[sc.target]
        proxy = FaultProxy(upstream).start()
        proxy.rules.extend(Rule(m, p, a, n) for m, p, a, n in sc.rules)
        try:
            return _scenario(sc, rig, seed, s3_env, run, d, proxy)
        finally:
            proxy.stop()

    run_table(record, CATEGORY, one, SCENARIOS, name=lambda s: s.id)


def _scenario(sc: Scenario, rig, seed: Seed, s3_env, run, d: Path, proxy) -> str | None:
    direct = {**s3_env, "IMGBUILD_INSECURE_REGISTRIES": f"{rig.registry},{proxy.host}"}
    via = dict(direct)
    channel = rig.channel_url
    if sc.target == "s3" or sc.command == "hydrate":
        url = f"s3://{rig.s3_bucket}/rel-faults-{uuid.uuid4().hex[:10]}"
    else:
        url = str(run.store)
    direct["IMGBUILD_STORE"] = via["IMGBUILD_STORE"] = url
    if sc.target == "s3":
        via["IMGBUILD_S3_ENDPOINT_URL"] = f"http://{proxy.host}"
    if sc.target == "channel":
        channel = f"http://{proxy.host}"
    sink = None
    if sc.command == "cache":
        args = ["resolve", "-c", channel, "--conda", "imgb-cli", "--arch", "linux-64",
                "--alias", "rel/faults"]  # fmt: skip
    elif sc.command == "hydrate":
        run("get", seed.full, "--from", seed.store, "--with-packages", env=direct)
        args = ["create", seed.full, "--prefix", d / "prefix"]
    else:
        shutil.copytree(seed.store, run.store, ignore=shutil.ignore_patterns(".locks", ".tmp"))
        repo = f"rel/faults-{uuid.uuid4().hex[:10]}"
        sink = f"{rig.registry}/{repo}"
        args = ["push", seed.full, "--base", "scratch", "--to", f"{proxy.host}/{repo}"]
    r = run(*args, "--json", env=via, expect=None, timeout=600)
    problems = []
    if proxy.hits() == 0:
        problems.append("the fault never fired")
    if sc.ok:
        if r.returncode != 0:
            problems.append(
                f"exit {r.returncode}, expected success after retries:\n{r.stderr[-1500:]}"
            )
        else:
            problems += _completed(sc, url, d, sink, seed)
    else:
        bad = clean_failure(r, 5, sc.phrases)
        if bad:
            problems.append(bad)
        if sc.command == "push" and _has_tag(sink, seed.full):
            problems.append(f"a failed push left tag {seed.full} in {sink}")
    # nothing corrupt, read directly (not through the proxy)
    problems += consistency(run, url, direct, sink, cli=False)
    return "\n".join(problems) or None


def _has_tag(sink: str, tag: str) -> bool:
    import requests

    host, repo = sink.split("/", 1)
    r = requests.get(f"http://{host}/v2/{repo}/tags/list", timeout=30)
    return r.status_code == 200 and tag in (r.json().get("tags") or [])


def _completed(sc: Scenario, url: str, d: Path, sink, seed: Seed) -> list[str]:
    if sc.command == "push":
        return [] if _has_tag(sink, seed.full) else [f"tag {seed.full} missing after the push"]
    if sc.command == "hydrate":
        return [] if (d / "prefix" / "bin" / "imgb-cli").exists() else ["no prefix after create"]
    envs = list(open_any(url).list("envs/"))
    return [] if envs else ["no env record after a successful resolve"]
