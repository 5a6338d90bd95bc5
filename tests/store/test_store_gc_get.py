"""gc (grace, leases, dry-run), verify (missing/damaged objects), get between stores, builds."""

import json
import os
import time

from helpers import make_env, run_cache, run_imgbuild, write_env

from imagebuilder.errors import INTEGRITY
from imagebuilder.store import open_store
from imagebuilder.store.gc import write_lease

ORPHAN = "pkgs/conda/" + "ab" * 32 + "/orphan-1.0-0.conda"


def _age(store_dir, key, seconds):
    p = store_dir / key
    t = time.time() - seconds
    os.utime(p, (t, t))


def _cached_local_store(tmp_path, served_pkgs, tag="gc"):
    env = make_env(served_pkgs, tag)
    store = tmp_path / "store"
    r = run_cache(write_env(tmp_path / f"{tag}.json", env), str(store))
    assert r.returncode == 0, r.stderr
    return env, store


def test_gc_grace_dry_run_and_leases(tmp_path, base_packages):
    env, store_dir = _cached_local_store(tmp_path, base_packages[:4])
    store = open_store(str(store_dir))
    store.put_bytes(ORPHAN, b"nobody needs me")
    # young orphan: kept by the default 24h grace
    g = run_imgbuild("gc", "--json", "--store", str(store_dir))
    assert g.returncode == 0 and json.loads(g.stdout)["removed"] == []
    assert json.loads(g.stdout)["young"] >= 1
    _age(store_dir, ORPHAN, 2 * 86400)
    for p in store_dir.glob("pkgs/**/*"):
        if p.is_file():
            _age(store_dir, str(p.relative_to(store_dir)), 2 * 86400)
    # a live writer's lease protects what it is about to rely on
    lease = write_lease(store, [ORPHAN])
    g = run_imgbuild("gc", "--json", "--store", str(store_dir))
    assert [o["key"] for o in json.loads(g.stdout)["removed"]] == []
    store.delete(lease)
    # dry-run reports exactly the orphan and removes nothing
    g = run_imgbuild("gc", "--dry-run", "--json", "--store", str(store_dir))
    assert g.returncode == 0, g.stderr
    assert [o["key"] for o in json.loads(g.stdout)["removed"] if o["key"].startswith("pkgs/")] == [
        ORPHAN
    ]
    assert store.exists(ORPHAN)
    g = run_imgbuild("gc", "--store", str(store_dir))
    assert g.returncode == 0 and "removed 1 objects" in g.stdout.splitlines()[-1], g.stdout
    assert not store.exists(ORPHAN)
    # everything the env references is still there and verifies; its record was kept
    v = run_imgbuild("verify", "--json", "--store", str(store_dir))
    assert v.returncode == 0 and json.loads(v.stdout)["objects"] == 4, v.stdout + v.stderr
    assert run_imgbuild("gc", "--grace", "soon", "--store", str(store_dir)).returncode == 1


def test_verify_reports_missing_and_damaged(tmp_path, base_packages):
    env, store_dir = _cached_local_store(tmp_path, base_packages[:3], "verify")
    pkgs = list(env.packages)
    (store_dir / pkgs[0].store_key).unlink()
    damaged = store_dir / pkgs[1].store_key
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\0")
    v = run_imgbuild("verify", "--json", "--store", str(store_dir))
    assert v.returncode == INTEGRITY
    rep = json.loads(v.stdout)
    kinds = {p["key"]: p["kind"] for p in rep["problems"]}
    assert kinds == {pkgs[0].store_key: "missing", pkgs[1].store_key: "mismatch"}
    v = run_imgbuild("verify", env.name, "--store", str(store_dir))
    assert v.returncode == INTEGRITY and "Traceback" not in v.stderr
    assert "problem(s)" in v.stderr


def test_get_from_local_into_s3_with_packages_and_alias(tmp_path, s3, s3_url, base_packages):
    env, src_dir = _cached_local_store(tmp_path, base_packages[:5], "get")
    a = run_imgbuild("alias", env.name, "team/get:v1", "--store", str(src_dir))
    assert a.returncode == 0, a.stderr
    r = run_imgbuild(
        "get", "team/get:v1", "--from", str(src_dir), "--with-packages", "--json",
        "--store", s3_url, env=s3.env(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["objects_copied"] == 5 and out["envs"][0]["copied"] is True
    assert out["alias"]["platforms"]["linux-64"]["full_id"] == env.full_id
    v = run_imgbuild("verify", "--json", "--store", s3_url, env=s3.env())
    assert v.returncode == 0, v.stdout + v.stderr
    assert json.loads(v.stdout) | {"bytes": 0} == {
        "ok": True, "envs": 1, "aliases": 1, "objects": 5, "bytes": 0, "problems": [],
    }  # fmt: skip
    # a second get copies nothing
    r = run_imgbuild(
        "get", env.name, "--from", str(src_dir), "--with-packages", "--json",
        "--store", s3_url, env=s3.env(),
    )  # fmt: skip
    assert json.loads(r.stdout)["objects_copied"] == 0
    assert json.loads(r.stdout)["envs"][0]["copied"] is False
    # and back from S3 into a fresh local store
    r = run_imgbuild(
        "get", env.name, "--from", s3_url, "--with-packages", "--store", str(tmp_path / "back"),
        env=s3.env(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert run_imgbuild("verify", "--store", str(tmp_path / "back")).returncode == 0
    # unknown env: exit 3, one line
    r = run_imgbuild("get", "team/nope", "--from", str(src_dir), "--store", str(tmp_path / "x"))
    assert r.returncode == 3 and "Traceback" not in r.stderr


def test_sdist_built_once_and_cross_arch_refused(tmp_path, served, rig):
    """imgb-sdist 0.1 has no wheel: built once per platform+python, recorded in builds/."""
    import hashlib

    sdist = served.root / "pypi" / "imgb_sdist-0.1.tar.gz"
    data = sdist.read_bytes()
    pkg = {
        "kind": "pypi", "subdir": "source", "name": "imgb-sdist", "version": "0.1", "build": "",
        "sha256": hashlib.sha256(data).hexdigest(), "filename": sdist.name,
        "url": f"{served.url}/pypi/{sdist.name}", "size": len(data), "source": "sdist",
    }  # fmt: skip
    from imagebuilder.env import Package, ResolvedEnv
    from imagebuilder.spec import make_spec

    def env_for(arch):
        spec = make_spec(arch=arch, pypi=["imgb-sdist"], indexes=[rig.index_url])
        return ResolvedEnv(spec, (Package.from_json(pkg),))

    store_dir = tmp_path / "store"
    f = write_env(tmp_path / "env.json", env_for("linux-64"))
    r = run_cache(f, str(store_dir))
    assert r.returncode == 0, r.stderr
    assert "1 built" in r.stderr
    rec = json.loads((store_dir / f"builds/{pkg['sha256']}.json").read_text())
    (build,) = rec["builds"].values()
    assert build["filename"].startswith("imgb_sdist-0.1-") and (store_dir / build["key"]).is_file()
    r = run_cache(f, str(store_dir))
    assert r.returncode == 0 and ", 1 built" not in r.stderr  # built once
    v = run_imgbuild("verify", "--json", "--store", str(store_dir))
    assert json.loads(v.stdout)["objects"] == 2  # the sdist and the wheel built from it
    r = run_cache(write_env(tmp_path / "mac.json", env_for("osx-arm64")), str(store_dir))
    assert r.returncode == 1, r.stderr
    assert "imgb-sdist 0.1" in r.stderr and "osx-arm64" in r.stderr and "Traceback" not in r.stderr


def _layer(store, tmp_path, name: str, data: bytes):
    """A layer record and its blob, as bake writes them (layerindex.put)."""
    import hashlib

    from imagebuilder.oci import layerindex
    from imagebuilder.oci.layer import LayerBlob

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob = LayerBlob(digest, digest, len(data), "application/vnd.oci.image.layer.v1.tar")
    tmp = tmp_path / f"{name}.blob"
    tmp.write_bytes(data)
    rec = layerindex.LayerRecord(key=name * 4, blob=blob, members=(f"conda/{name}/1/{'0' * 64}",))
    return layerindex.put(store, rec, tmp)


def test_verify_rehashes_layer_blobs_and_reports_damaged_layer_records(tmp_path, base_packages):
    env, store_dir = _cached_local_store(tmp_path, base_packages[:1], "layers")
    store = open_store(str(store_dir))
    good = _layer(store, tmp_path, "aaaa", b"good layer bytes" * 100)
    bad = _layer(store, tmp_path, "bbbb", b"other layer bytes" * 100)
    v = run_imgbuild("verify", "--json", "--store", str(store_dir))
    assert v.returncode == 0, v.stdout + v.stderr
    assert json.loads(v.stdout)["objects"] == 3  # the package and both layer blobs
    # a blob changed on disk, and a record that no longer parses
    blob = store_dir / "blobs" / "sha256" / bad.blob.digest.split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    (store_dir / "layers" / "cccccccccccccccc.json").write_text("{not json")
    v = run_imgbuild("verify", "--json", "--store", str(store_dir))
    assert v.returncode == INTEGRITY, v.stdout + v.stderr
    kinds = {p["key"]: p["kind"] for p in json.loads(v.stdout)["problems"]}
    assert kinds == {
        f"blobs/sha256/{bad.blob.digest.split(':')[1]}": "mismatch",
        "layers/cccccccccccccccc.json": "record",
    }
    assert f"blobs/sha256/{good.blob.digest.split(':')[1]}" not in kinds
    h = run_imgbuild("verify", "--store", str(store_dir))
    assert h.returncode == INTEGRITY and "the next bake writes them again" in h.stderr, h.stderr
    # verifying one env checks only what that env references
    assert run_imgbuild("verify", env.name, "--store", str(store_dir)).returncode == 0


def test_gc_rereads_leases_before_each_delete(tmp_path, base_packages):
    """A writer whose lease appears after gc's first lease listing (while gc deletes) keeps
    the old, unreferenced package it relies on."""
    from imagebuilder.store.local import LocalStore

    _env, store_dir = _cached_local_store(tmp_path, base_packages[:1])
    first = "pkgs/conda/" + "aa" * 32 + "/first-1.0-0.conda"
    later = "pkgs/conda/" + "ff" * 32 + "/later-1.0-0.conda"  # deleted after `first`: key order

    class WriterArrives(LocalStore):
        """The real local store; a writer's lease lands while gc deletes its first object."""

        arrived = False

        def delete(self, key):
            if not self.arrived:
                self.arrived = True
                write_lease(self, [later])
            super().delete(key)

    store = WriterArrives(store_dir)
    for key in (first, later):
        store.put_bytes(key, b"old and unreferenced")
        _age(store_dir, key, 2 * 86400)
    from imagebuilder.store.gc import gc

    report = gc(store, grace_s=86400)
    removed = [o.key for o in report.removed]
    assert first in removed and later not in removed
    assert store.exists(later) and not store.exists(first)


def test_record_env_restores_a_package_gc_took_after_the_cache(tmp_path, base_packages, served):
    """The other half of the window: the package went between the cache phase (which found it
    present) and the env record. record_env re-checks after writing the record and stores it
    again, downloading only that package."""
    env, store_dir = _cached_local_store(tmp_path, base_packages[:3], "recheck")
    from imagebuilder.cache import record_env

    store = open_store(str(store_dir))
    gone = env.packages[1].store_key
    store.delete(gone)  # what a racing gc did
    served.reset()
    record_env(env, store)
    assert store.exists(gone)
    assert served.package_gets() == 1
    v = run_imgbuild("verify", env.name, "--store", str(store_dir))
    assert v.returncode == 0, v.stderr
