"""Bad input catalogue (issue 10, item 5): one table of cases over every command. Each must
exit with its CONTRACT.md code (1 bad input, 2 usage, 3 not found, 4 conflict, 5 unavailable),
print one `{"error"}` document (--json) whose one-line message names the problem, show no
traceback, and change nothing: the store, the OCI layout folder, the working folder and the
registry repository are snapshot before and after.

Every case runs on its own copy of a seeded store: imgb-cli (linux-64, `rel/bad:v1`, an
immutable tag, and `rel/bad` latest), zlib (linux-64) and imgb-cli for osx-arm64.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from relhelp import clean_failure, diff, run_table, snapshot

CATEGORY = "bad inputs"


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple  # may hold "{E1}", "{E2}", "{OSX}", "{CH}", "{REG}", "{DIR}" placeholders
    code: int
    phrases: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()  # files written into the case's working folder
    env: tuple[tuple[str, str], ...] = ()


NOT_HEX = "0123456789abcdef"  # all hex: a full_id16 nobody has (it is no alias either)
FILES_BAD_YML = (("environment.yml", "dependencies: [tinyfoo\n  - : :\n"),)
CASES = [
    # --- resolve: requests
    Case("resolve unknown conda package", ("resolve", "-c", "{CH}", "--conda", "nosuchpkg-xyz"), 3,
         ("nosuchpkg-xyz",)),
    Case("resolve unsatisfiable", ("resolve", "-c", "{CH}", "--conda", "conflict-a", "--conda",
                                   "conflict-b"), 4, ("conflict-a", "conflict-b")),
    Case("resolve no such version", ("resolve", "-c", "{CH}", "--conda", "tinyfoo>=9"), 3,
         ("tinyfoo",)),
    Case("resolve bad conda spec", ("resolve", "-c", "{CH}", "--conda", "tinyfoo[version=1"), 1,
         ("tinyfoo[version=1",)),
    Case("resolve bad pypi requirement", ("resolve", "-c", "{CH}", "--pypi", "req[[==1"), 1,
         ("req[[",)),
    Case("resolve malformed requirements.txt", ("resolve", "-c", "{CH}", "-r", "requirements.txt"),
         1, ("requirements.txt",), (("requirements.txt", "tinyfoo ==== 1 ;;; [\n"),)),
    Case("resolve malformed environment.yml", ("resolve", "-c", "{CH}", "-f", "environment.yml"),
         1, ("environment.yml",), FILES_BAD_YML),
    Case("resolve malformed pyproject.toml", ("resolve", "-c", "{CH}", "-p", "pyproject.toml"), 1,
         ("pyproject.toml",), (("pyproject.toml", "[project\nname = 'x'\n"),)),
    Case("resolve malformed imgbuild.toml", ("resolve",), 1, ("imgbuild.toml",),
         (("imgbuild.toml", "[environment]\nconda = [tinyfoo\n"),)),
    Case("resolve malformed lock file", ("resolve", "--lockfile", "conda-lock.yml"), 1,
         ("conda-lock.yml",), (("conda-lock.yml", "version: 1\npackage: {{{\n"),)),
    Case("resolve unknown lock format", ("resolve", "--lockfile", "lock.txt"), 1, ("lock.txt",),
         (("lock.txt", "this is not a lock file\n"),)),
    Case("resolve missing input file", ("resolve", "-r", "nope.txt"), 1, ("nope.txt",)),
    Case("resolve bad arch", ("resolve", "-c", "{CH}", "--conda", "tinyfoo", "--arch",
                              "linux-999"), 1, ("linux-999",)),
    Case("resolve bad alias name", ("resolve", "-c", "{CH}", "--conda", "tinyfoo", "--alias",
                                    "Bad/NAME!"), 1, ("Bad/NAME!",)),
    Case("resolve bad sys package", ("resolve", "-c", "{CH}", "--conda", "tinyfoo", "--sys-pkg",
                                     "glibc"), 1, ("glibc",)),
    Case("resolve bad exclude-newer", ("resolve", "-c", "{CH}", "--conda", "tinyfoo",
                                       "--exclude-newer", "last tuesday"), 1, ("last tuesday",)),
    Case("resolve channel unreachable", ("resolve", "-c", "http://127.0.0.1:9", "--conda",
                                         "tinyfoo"), 5, ("127.0.0.1:9",)),
    Case("resolve nothing to resolve", ("resolve",), 1, ("requirements.txt",)),
    Case("resolve immutable alias taken", ("resolve", "-c", "{CH}", "--conda", "zlib", "--alias",
                                           "rel/bad:v1"), 4, ("rel/bad:v1", "immutable")),
    Case("resolve new env, immutable alias taken", ("resolve", "-c", "{CH}", "--conda", "bzip2",
                                                    "--alias", "rel/bad:v1"), 4, ("rel/bad:v1",)),
    # --- names of environments
    Case("show unknown full_id", ("show", NOT_HEX), 3, (NOT_HEX,)),
    Case("show unknown alias", ("show", "rel/nosuch"), 3, ("rel/nosuch",)),
    Case("show unknown tag", ("show", "rel/bad:nosuchtag"), 3, ("rel/bad:nosuchtag",)),
    Case("show invalid env name", ("show", "Not/A..Name"), 1, ("Not/A..Name",)),
    Case("show unknown pathspec", ("show", "mf:NoFlow/1/start"), 3, ("NoFlow",)),
    Case("alias immutable overwrite", ("alias", "{E2}", "rel/bad:v1"), 4, ("immutable",)),
    Case("alias bad name", ("alias", "{E1}", "UPPER/case"), 1, ("UPPER/case",)),
    Case("alias bad tag", ("alias", "{E1}", "rel/bad:-tag"), 1, ("-tag",)),
    Case("alias unknown env", ("alias", NOT_HEX, "rel/other"), 3, (NOT_HEX,)),
    Case("alias all-hex name", ("alias", "{E1}", "deadbeef"), 1, ("deadbeef",)),
    # --- hydrate
    Case("create unknown env", ("create", NOT_HEX, "--prefix", "{DIR}/p"), 3, (NOT_HEX,)),
    Case("create other arch", ("create", "{OSX}", "--prefix", "{DIR}/p"), 1, ("osx-arm64",)),
    Case("create missing pack", ("create", "{E1}", "--prefix", "{DIR}/p", "--from-pack"), 3,
         ("pack",)),
    Case("create into a foreign folder", ("create", "{E1}", "--prefix", "{DIR}/foreign"), 1,
         ("foreign",), (("foreign/notes.txt", "mine\n"),)),
    Case("pack env without python", ("pack", "{E1}"), 1, ("python",)),
    # --- bake / push
    Case("push unknown sink", ("push", "{E1}", "--to", "ftp://example/x"), 2, ("ftp://",)),
    Case("push bad registry reference", ("push", "{E1}", "--to", "{REG}/UPPER/Repo"), 1,
         ("UPPER/Repo",)),
    Case("push to a digest", ("push", "{E1}", "--to", "{REG}/rel/x@sha256:" + "0" * 64), 2,
         ("digest",)),
    Case("push unknown base", ("push", "{E1}", "--base", "oci:{DIR}/nobase:tag", "--to",
                               "oci:{DIR}/oci"), 3, ("nobase",)),
    Case("push bad compression", ("push", "{E1}", "--compression", "lz4", "--to",
                                  "oci:{DIR}/oci"), 2, ("lz4",)),
    Case("push registry down", ("push", "{E1}", "--base", "scratch", "--to",
                                "127.0.0.1:9/rel/x"), 5, ("127.0.0.1:9",)),
    Case("push unknown arch of env", ("push", "{E1}", "--arch", "linux-aarch64", "--to",
                                      "oci:{DIR}/oci"), 3, ("linux-aarch64",)),
    Case("image unknown env", ("image", NOT_HEX, "--to", "oci:{DIR}/oci"), 3, (NOT_HEX,)),
    Case("push bad SOURCE_DATE_EPOCH", ("push", "{E1}", "--base", "scratch", "--to",
                                        "oci:{DIR}/oci"), 1, ("SOURCE_DATE_EPOCH",),
         (), (("SOURCE_DATE_EPOCH", "yesterday"),)),
    # --- records out
    Case("export unknown format", ("export", "{E1}", "--format", "nix"), 2, ("nix",)),
    Case("export unknown env", ("export", NOT_HEX), 3, (NOT_HEX,)),
    Case("sbom unknown env", ("sbom", NOT_HEX), 3, (NOT_HEX,)),
    Case("dockerfile unknown env", ("dockerfile", NOT_HEX, "--base", "{REG}/rel/base:1"), 3,
         (NOT_HEX,)),
    Case("why unknown package", ("why", "nosuchpkg", "{E1}"), 3, ("nosuchpkg",)),
    Case("diff unknown env", ("diff", "{E1}", NOT_HEX), 3, (NOT_HEX,)),
    # --- stores
    Case("verify unknown env", ("verify", NOT_HEX), 3, (NOT_HEX,)),
    Case("gc bad grace", ("gc", "--grace", "banana"), 1, ("banana",)),
    Case("get from a missing store", ("get", "{E1}", "--from", "{DIR}/no-store"), 3,
         ("no-store",)),
    Case("get without --from", ("get", "{E1}"), 2, ("--from",)),
    Case("missing store folder", ("show", "{E1}", "--store", "{DIR}/no-such-store"), 3,
         ("no-such-store",)),
    Case("unsupported store URL", ("ls", "--store", "gs://bucket/x"), 1, ("gs://bucket/x",)),
    Case("missing S3 bucket", ("ls", "--store", "s3://no-such-bucket-imgb/x"), 5,
         ("no-such-bucket-imgb",)),
    Case("malformed user config", ("config", "show"), 1, ("config.toml",),
         (("home/.config/imgbuild/config.toml", "store = [unclosed\n"),)),
    Case("unknown verb", ("frobnicate",), 2, ("frobnicate",)),
    Case("unknown option", ("ls", "--colour"), 2, ("--colour",)),
]  # fmt: skip


@dataclass(frozen=True)
class Seed:
    store: Path
    e1: str
    e2: str
    osx: str


@pytest.fixture(scope="module")
def seed(rig, runner, tmp_path_factory) -> Seed:
    rig.need("channel_url", "registry")
    run = runner(tmp_path_factory.mktemp("bad-seed"))
    ids = {}
    for name, spec, arch in (("e1", "imgb-cli", "linux-64"), ("e2", "zlib", "linux-64"),
                             ("osx", "imgb-cli", "osx-arm64")):  # fmt: skip
        r = run("resolve", "-c", rig.channel_url, "--conda", spec, "--arch", arch, "--json")
        ids[name] = r.json()["full_id"][:16]
    run("alias", ids["e1"], "rel/bad:v1")
    run("alias", ids["e1"], "rel/bad")
    return Seed(run.store, ids["e1"], ids["e2"], ids["osx"])


def _registry_tags(registry: str, repo: str) -> list[str]:
    import requests

    r = requests.get(f"http://{registry}/v2/{repo}/tags/list", timeout=30)
    return sorted(r.json().get("tags") or []) if r.status_code == 200 else []


def test_bad_inputs(rig, seed, runner, tmp_path, record):
    assert len(CASES) >= 30
    repo = "rel/bad-input"
    tags_before = _registry_tags(rig.registry, repo)

    def one(case: Case) -> str | None:
        d = tmp_path / case.id.replace(" ", "-")
        run = runner(d)
        shutil.copytree(seed.store, run.store, ignore=shutil.ignore_patterns(".locks", ".tmp"))
        for name, text in case.files:
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text(text)
        values = {"E1": seed.e1, "E2": seed.e2, "OSX": seed.osx, "CH": rig.channel_url,
                  "REG": rig.registry, "DIR": str(d)}  # fmt: skip
        args = [str(a).format(**values) for a in case.args]
        env = {"IMGBUILD_INSECURE_REGISTRIES": rig.registry, "IMGBUILD_REGISTRY": None,
               "AWS_ACCESS_KEY_ID": rig.s3_access_key, "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
               "IMGBUILD_S3_ENDPOINT_URL": rig.s3_endpoint, "IMGBUILD_S3_ATTEMPTS": "1",
               "IMGBUILD_FETCH_ATTEMPTS": "1", **dict(case.env)}  # fmt: skip
        # the state: the store, the working folder (OCI layouts, prefixes, input files)
        # not state: caches in HOME, a store's lock files, temp folders and leases (short-lived
        # notes for a concurrent gc), the lock file next to a prefix
        skip = ["home", "store/.locks", "store/.tmp", "store/leases", "p.imgbuild-lock",
                ".p.imgbuild-lock"]  # fmt: skip
        before = snapshot(d, skip)
        r = run(*args, "--json", env=env, expect=None, timeout=300)
        problems = []
        bad = clean_failure(r, case.code, case.phrases)
        if bad:
            problems.append(bad)
        changed = diff(before, snapshot(d, skip))
        if changed:
            problems.append(f"state changed: {changed[:20]}")
        return "\n".join(problems) or None

    run_table(record, CATEGORY, one, CASES, name=lambda c: c.id)
    assert _registry_tags(rig.registry, repo) == tags_before
    assert _registry_tags(rig.registry, "rel/x") == []
