"""Helpers of the reliability suite: tree snapshots, parallel sub-cases, error checks,
store/registry/OCI-layout consistency walks, the rig's S3 keys in this process's environment."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

JOBS = int(os.environ.get("IMGBUILD_RELIABILITY_JOBS", 6))


@contextlib.contextmanager
def rig_s3_environ(rig, **extra: str) -> Iterator[dict[str, str]]:
    """The rig's S3 keys and endpoint (and `extra`) set in os.environ while inside (checks
    open the S3 store in this process too), the previous values put back after."""
    env = {
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "IMGBUILD_S3_ENDPOINT_URL": rig.s3_endpoint,
        **extra,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# --------------------------------------------------------------------------- trees


def snapshot(root: Path, skip: Iterable[str] = ()) -> dict[str, tuple]:
    """Every entry under root: relative path -> (type, mode, size, sha256 or link target).
    `skip`: relative paths (folders or files) left out."""
    root = Path(root)
    skip = tuple(s.rstrip("/") + "/" for s in skip)
    out: dict[str, tuple] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in dirnames:
            rel = rel_dir + d
            if (rel + "/").startswith(skip):
                continue
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                out[rel] = ("link", 0, 0, os.readlink(full))
                continue
            st = os.lstat(full)
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), 0, "")
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = rel_dir + f
            if (rel + "/").startswith(skip):
                continue
            full = os.path.join(dirpath, f)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, 0, os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, _sha(full))
            else:
                out[rel] = ("special", st.st_mode, 0, "")
    return out


def _sha(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        return f"unreadable:{e.errno}"
    return h.hexdigest()


def diff(before: dict, after: dict) -> list[str]:
    out = []
    for k in sorted(set(before) | set(after)):
        if k not in before:
            out.append(f"+ {k}")
        elif k not in after:
            out.append(f"- {k}")
        elif before[k] != after[k]:
            out.append(f"~ {k}")
    return out


def outside(changes: list[str], allowed: Iterable[str]) -> list[str]:
    """Changes whose path is not under one of the allowed patterns (fnmatch, e.g.
    `home/.imgbuild/cache/rattler/python-*`); folders made to hold an allowed path are fine."""
    from fnmatch import fnmatch

    allowed = tuple(a.rstrip("/") for a in allowed)
    bad = []
    for c in changes:
        path = c[2:]
        under = any(fnmatch(path, a) or fnmatch(path, a + "/*") for a in allowed)
        parent = c[0] == "+" and any(a.startswith(path + "/") for a in allowed)
        if not (under or parent):
            bad.append(c)
    return bad


# --------------------------------------------------------------------------- sub-cases


def parallel(fn: Callable, items: list, jobs: int = JOBS) -> list:
    """fn(item) for every item in a thread pool (the work is in subprocesses): a list of
    (item, ok, detail, seconds); an exception is a failed case with its traceback."""

    def one(item):
        t0 = time.monotonic()
        try:
            problem = fn(item)
        except Exception:  # noqa: BLE001 - reported as the case's failure
            return item, False, traceback.format_exc()[-3000:], time.monotonic() - t0
        return item, not problem, problem or "", time.monotonic() - t0

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, items))


def run_table(record, category: str, fn: Callable, items: list, name=lambda i: str(i), jobs=JOBS):
    """Run fn over items in parallel, record each as a case, fail the test if any failed."""
    for item, ok, detail, secs in parallel(fn, items, jobs):
        record(category, name(item), ok, detail, secs)
    record.check()


# --------------------------------------------------------------------------- CLI results


def error_of(r) -> dict | None:
    """The {"kind","message","hint"} of a --json run's error document (None if absent)."""
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        return None
    return doc.get("error") if isinstance(doc, dict) else None


def clean_failure(r, code: int | None, phrases: Iterable[str] = ()) -> str | None:
    """None when r failed as a user should see it: exit `code` (any non-zero when None), no
    traceback, one `{"error"}` document on stdout (--json) whose message is one line and holds
    every phrase (case-insensitive). Else what is wrong, with the output."""
    problems = []
    if r.returncode == 0:
        problems.append("exit 0")
    elif code is not None and r.returncode != code:
        problems.append(f"exit {r.returncode}, expected {code}")
    if r.returncode < 0:
        problems.append(f"killed by signal {-r.returncode}")
    if "Traceback" in r.stderr or "Traceback" in r.stdout:
        problems.append("traceback")
    err = error_of(r)
    if err is None:
        problems.append("no error document on stdout")
    else:
        msg = err.get("message", "")
        if "\n" in msg or not msg.strip():
            problems.append(f"message is not one line: {msg!r}")
        low = (msg + " " + err.get("hint", "")).lower()
        missing = [p for p in phrases if p.lower() not in low]
        if missing:
            problems.append(f"message lacks {missing}")
    if not problems:
        return None
    return (
        f"imgbuild {' '.join(r.args)}: {'; '.join(problems)}\n--- stdout\n{r.stdout[-1500:]}"
        f"\n--- stderr\n{r.stderr[-1500:]}"
    )


# --------------------------------------------------------------------------- consistency


def store_objects_match_keys(root: Path) -> list[str]:
    """Local store: every content-addressed object hashes to its key; no temp names under final
    keys. Returns problems."""
    root = Path(root)
    problems = []
    for base, depth in (("pkgs", 2), ("blobs", 2)):
        top = root / base
        if not top.exists():
            continue
        for p in top.rglob("*"):
            if not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            parts = rel.split("/")
            if any(x.startswith(".") or x.endswith((".tmp", ".part")) for x in parts):
                problems.append(f"temp file under a final key: {rel}")
                continue
            want = parts[depth] if len(parts) > depth else ""
            got = _sha(str(p))
            if got != want:
                problems.append(f"{rel} hashes to {got}")
    for p in (root / "envs").rglob("*") if (root / "envs").exists() else ():
        if p.is_file() and not p.name.endswith(".json"):
            problems.append(f"temp file under envs/: {p.relative_to(root)}")
    return problems


def oci_layout_problems(root: Path) -> list[str]:
    """Every blob index.json reaches (manifests, configs, layers, index children) is present and
    hashes to its digest; no temp files among the blobs."""
    root = Path(root)
    if not (root / "index.json").exists():
        return []
    problems = []
    for p in (root / "blobs").rglob("*") if (root / "blobs").exists() else ():
        if p.is_file() and (p.name.startswith(".") or p.name.endswith(".tmp")):
            problems.append(f"temp blob left: {p.relative_to(root)}")
    seen: set[str] = set()

    def blob(digest: str) -> bytes | None:
        path = root / "blobs" / digest.replace(":", "/")
        if not path.exists():
            problems.append(f"{digest} is named but missing")
            return None
        data = path.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            problems.append(f"{digest} does not hash to its name")
        return data

    def walk(desc: dict) -> None:
        d = desc["digest"]
        if d in seen:
            return
        seen.add(d)
        data = blob(d)
        if (
            data is None
            or "manifest" not in desc.get("mediaType", "")
            and "index" not in desc.get("mediaType", "")
        ):
            return
        doc = json.loads(data)
        for child in doc.get("manifests", []):
            walk(child)
        for layer in [doc.get("config")] + doc.get("layers", []):
            if layer:
                seen.add(layer["digest"])
                blob(layer["digest"])

    for m in json.loads((root / "index.json").read_text()).get("manifests", []):
        walk(m)
    return problems


def registry_problems(host: str, repo: str) -> list[str]:
    """Walk tags -> manifests -> blobs of one repository with HEAD/GET: every tag resolves and
    every blob a manifest names answers 200 (a tag never points at something incomplete)."""
    import requests

    problems = []
    base = f"http://{host}/v2/{repo}"
    accept = ", ".join(
        [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    )
    r = requests.get(f"{base}/tags/list", timeout=30)
    if r.status_code == 404:
        return []
    tags = r.json().get("tags") or []
    done: set[str] = set()

    def manifest(ref: str, via: str) -> None:
        if ref in done:
            return
        done.add(ref)
        m = requests.get(f"{base}/manifests/{ref}", headers={"Accept": accept}, timeout=30)
        if m.status_code != 200:
            problems.append(f"{via}: manifest {ref} answers {m.status_code}")
            return
        doc = m.json()
        for child in doc.get("manifests", []):
            manifest(child["digest"], f"{via} -> {child['digest'][:19]}")
        for b in [doc.get("config")] + doc.get("layers", []):
            if not b:
                continue
            h = requests.head(f"{base}/blobs/{b['digest']}", timeout=30)
            if h.status_code != 200:
                problems.append(f"{via}: blob {b['digest']} answers {h.status_code}")
            elif int(h.headers.get("Content-Length", b["size"])) != b["size"]:
                problems.append(f"{via}: blob {b['digest']} has the wrong size")

    for t in tags:
        manifest(t, f"tag {t}")
    return problems


# --------------------------------------------------------------------------- stores


def open_any(url: str):
    from imagebuilder.config import load_config
    from imagebuilder.store import open_store

    return open_store(
        url, load_config(flags={"s3_endpoint_url": os.environ.get("IMGBUILD_S3_ENDPOINT_URL")})
    )


def store_problems(store) -> list[str]:
    """Content-addressed objects hash to their keys; no temp names; layer records name present
    blobs; packs are complete archives."""
    import zstandard

    from imagebuilder.store.verify import hash_object

    problems = []
    for top, idx in (("pkgs/", 2), ("blobs/", 2)):
        for key in store.list(top):
            parts = key.split("/")
            if any(p.startswith(".") or p.endswith((".tmp", ".part")) for p in parts):
                problems.append(f"temp object visible: {key}")
                continue
            got, _ = hash_object(store, key)
            if len(parts) <= idx or got != parts[idx]:
                problems.append(f"{key} hashes to {got}: partial or damaged")
    for key in store.list("layers/"):
        try:
            rec = json.loads(store.get_bytes(key))
            blob = "blobs/" + rec["digest"].replace(":", "/")
        except (ValueError, KeyError) as e:
            problems.append(f"layer record {key} unreadable: {e}")
            continue
        if not store.exists(blob):
            problems.append(f"layer record {key} names missing {blob}")
    for key in store.list("packs/"):
        if not key.endswith(".tar.zst"):
            problems.append(f"temp object visible: {key}")
            continue
        try:
            data = store.get_bytes(key)
            raw = zstandard.ZstdDecompressor().stream_reader(data).read()
            if b".imgbuild-pack.json" not in raw[:4096]:
                problems.append(f"pack {key} has no manifest first")
        except zstandard.ZstdError as e:
            problems.append(f"pack {key} is not a complete zstd stream: {e}")
    for key in store.list("envs/"):
        if not key.endswith(".json"):
            problems.append(f"temp object visible: {key}")
    return problems


def referenced(store) -> set[str]:
    from imagebuilder.store import envs as envs_mod
    from imagebuilder.store.verify import package_keys

    keys: set[str] = set()
    for k in envs_mod.env_keys(store):
        keys |= set(package_keys(envs_mod.read_env(store, k)))
    return keys


def consistency(run, url: str, extra: dict, sink: str | None, cli: bool = True) -> list[str]:
    """The checks above; `cli`: verify and gc through `imgbuild` (else the same functions in
    this process, to save two interpreter starts after a rerun)."""
    problems = []
    store = open_any(url)
    if cli:
        v = run("verify", "--json", "--store", url, env=extra, expect=None)
        if v.returncode != 0:
            problems.append(f"verify exit {v.returncode}: {v.stdout[-800:]} {v.stderr[-800:]}")
        g = run("gc", "--dry-run", "--grace", "0", "--json", "--store", url, env=extra, expect=None)
        if g.returncode != 0:
            problems.append(f"gc --dry-run exit {g.returncode}: {g.stderr[-800:]}")
            removed: set[str] = set()
        else:
            removed = {o["key"] for o in g.json()["removed"]}
    else:
        from imagebuilder.store.gc import gc
        from imagebuilder.store.verify import verify_store

        rep = verify_store(store)
        if not rep.ok:
            problems.append(f"verify: {rep.to_json()['problems']}")
        removed = {o.key for o in gc(store, 0, dry_run=True).removed}
    wrong = sorted(
        k for k in removed if k in referenced(store) or k.startswith(("envs/", "aliases/"))
    )
    if wrong:
        problems.append(f"gc would remove referenced objects: {wrong}")
    problems += store_problems(store)
    if sink and sink.startswith("oci:"):
        problems += oci_layout_problems(Path(sink[4:]))
    elif sink:
        host, repo = sink.split("/", 1)
        problems += registry_problems(host, repo)
    return problems
