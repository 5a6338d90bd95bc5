"""Hostile packs (`packs/<full16>/<arch>.tar.zst`, imagebuilder/pack.py) planted in a store: a
pack is unpacked by `imgbuild create --from-pack` and by the task bootstrap, so a tampered
shared store must not let it write outside the prefix either. Members and the manifest's list
of files to relocate both aim at the sentinel folder.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

CLIMB = "../" * 40
MANIFEST = ".imgbuild-pack.json"


def _member(name: str, kind=tarfile.REGTYPE, data: bytes = b"", link: str = "", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, link, mode
    if kind == tarfile.CHRTYPE:
        ti.devmajor, ti.devminor = 1, 3
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def cases(sentinel: Path) -> dict[str, tuple[list, list, str]]:
    """case -> (tar members, replacements [path, placeholder, mode], phrase of the refusal).
    The victim file in the sentinel holds "original": a replacement naming it with that
    placeholder would rewrite it if the path were followed."""
    s = str(sentinel).lstrip("/")
    ok = _member("share/ok.txt", data=b"fine\n")
    # l1 -> .. , l2 -> l1/.. , ...: each stays inside when read lexically ("l1/.." is ".")
    # but climbs one more folder when followed; 40 of them reach "/".
    chain = [_member("l1", tarfile.SYMTYPE, link="..")]
    chain += [_member(f"l{i}", tarfile.SYMTYPE, link=f"l{i - 1}/..") for i in range(2, 41)]
    chain.append(_member("s", tarfile.SYMTYPE, link=f"l40/{s}"))
    return {
        "dotdot": ([ok, _member(f"{CLIMB}{s}/pack-dotdot.txt", data=b"pwned")], [], "unsafe"),
        "absolute": ([ok, _member(f"/{s}/pack-abs.txt", data=b"pwned")], [], "unsafe"),
        "symlink-abs": ([ok, _member("share/l", tarfile.SYMTYPE, link=f"/{s}")], [], "outside"),
        "through-symlink": (
            [_member("share/l", tarfile.SYMTYPE, link="."), _member("share/l/x", data=b"x")],
            [],
            "through a symlink",
        ),
        "device": ([ok, _member("share/null", tarfile.CHRTYPE)], [], "not a file"),
        "symlink-chain": ([ok, *chain], [], "outside"),
        "chain-relocate": ([ok, *chain], [["s/victim.txt", "original", "text"]], "outside"),
        "relocate-dotdot": (
            [ok],
            [[f"{CLIMB}{s}/victim.txt", "original", "text"]],
            "outside the prefix",
        ),
        "relocate-absolute": (
            [ok],
            [[f"/{s}/victim.txt", "original", "text"]],
            "outside the prefix",
        ),
    }


def write_pack(out: Path, env, members: list, replacements: list) -> None:
    import zstandard

    manifest = {
        "schema": "imgbuild/pack/v1",
        "req_id": env.req_id,
        "full_id": env.full_id,
        "arch": env.arch,
        "placeholder": "/tmp/_imgbuild_pack_prefix_v1",
        "replacements": replacements,
        "python": "bin/python",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = json.dumps(manifest).encode()
        ti = tarfile.TarInfo(MANIFEST)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
        for ti, body in members:
            t.addfile(ti, io.BytesIO(body) if ti.type == tarfile.REGTYPE else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


def plant_pack(store_dir: Path, case: str, sentinel: Path) -> str:
    """An env record (one made-up package: a pack needs nothing else) and its hostile pack in
    a local store; returns the env's full_id16."""
    import hashlib

    from imagebuilder.env import Package, ResolvedEnv
    from imagebuilder.pack import pack_key
    from imagebuilder.spec import make_spec
    from imagebuilder.store import open_store
    from imagebuilder.store.envs import put_env

    members, reps, _ = cases(sentinel)[case]
    sha = hashlib.sha256(f"pack-{case}".encode()).hexdigest()
    pkg = Package.from_json(
        {
            "kind": "conda", "subdir": "linux-64", "name": f"packed-{case}", "version": "1.0",
            "build": "0", "sha256": sha, "filename": f"packed-{case}-1.0-0.conda",
            "url": f"http://example.invalid/linux-64/packed-{case}-1.0-0.conda", "size": 1,
        }
    )  # fmt: skip
    env = ResolvedEnv(make_spec(arch="linux-64", conda=[f"packed-{case}"]), (pkg,))
    store = open_store(str(store_dir))
    put_env(store, env)
    write_pack(Path(store_dir) / pack_key(env), env, members, reps)
    return env.full_id[:16]
