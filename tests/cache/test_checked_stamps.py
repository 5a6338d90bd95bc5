"""The cache phase stamps this machine's copy of each archive it verified and checked, so the
first hydrate or bake here (`imgbuild resolve && imgbuild push`) neither hashes nor checks it
again (cache._remember_checked, install/files.py remember_verified)."""

from __future__ import annotations

import pytest
from helpers import make_env

from imagebuilder.cache import cache_env
from imagebuilder.install import files
from imagebuilder.store.localcache import fetch_to_local


def _no_rehash(monkeypatch):
    import imagebuilder.archive_check as ac
    import imagebuilder.fetch as fetch

    def boom(*a, **k):
        raise AssertionError("hashed or checked again")

    monkeypatch.setattr(fetch, "sha256_file", boom)
    monkeypatch.setattr(ac, "check_archive", boom)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_first_install_after_cache_does_not_check_again(
    tmp_path, served, base_packages, where, request, monkeypatch
):
    if where == "s3":
        request.getfixturevalue("s3_env")
        from imagebuilder.store.s3 import S3Store

        s3 = request.getfixturevalue("s3")
        store = S3Store(request.getfixturevalue("s3_url"), endpoint_url=s3.endpoint)
    else:
        from imagebuilder.store.local import LocalStore

        store = LocalStore(tmp_path / "store")
    env = cache_env(make_env(base_packages[:6], f"stamps-{where}"), store)
    with monkeypatch.context() as m:
        _no_rehash(m)
        for p in env.packages:
            path = fetch_to_local(store, p.store_key, p.sha256)
            files.verify(path, p.sha256, p.label)  # would raise if it hashed again

    # a stamp vouches for that exact file only: changed bytes are hashed, and refused
    p = next(x for x in env.packages if x.filename.endswith(".conda"))
    path = fetch_to_local(store, p.store_key, p.sha256)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    from imagebuilder.errors import IntegrityError

    with pytest.raises(IntegrityError, match="corrupted"):
        files.verify(path, p.sha256, p.label)


def test_no_stamp_for_a_copy_this_process_did_not_make(tmp_path, served, base_packages):
    """Present already (stored by another process): nothing was checked here, nothing stamped."""
    from imagebuilder.store.local import LocalStore

    store = LocalStore(tmp_path / "store")
    env = make_env(base_packages[:3], "present")
    for p in env.packages:  # stored by someone else, never checked by this machine's cache
        src = served.root / p.url[len(served.url) :].lstrip("/")
        store.put_file(p.store_key, src)
    cache_env(env, store)
    for p in env.packages:
        assert not files._stamp_file(p.sha256).exists(), p.label
