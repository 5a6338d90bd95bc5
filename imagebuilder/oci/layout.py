"""`oci:DIR[:REF]`: an OCI image layout folder holding any number of images.

Write order keeps the folder valid after a crash at any point: every blob first (each to a
temp name, then renamed into place), the manifest, and `index.json` last, replaced
atomically under a lock, so index.json never names a missing blob. Tags are
`org.opencontainers.image.ref.name` annotations: one index entry per tag; writing a tag moves
it. Blobs the store holds on the same filesystem are hard-linked, not copied.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from imagebuilder.atomic import temp_path, write_atomic
from imagebuilder.errors import BadInput, IntegrityError, NotFound, Unavailable
from imagebuilder.oci.image import MT_INDEX, Artifact, BlobSource, Descriptor, ImageIndex
from imagebuilder.oci.sink import Written
from imagebuilder.testhooks import kill_point

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT = {"imageLayoutVersion": "1.0.0"}


def blob_path(root: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise IntegrityError(f"unsupported or malformed digest {digest!r}")
    return root / "blobs" / algo / hexd


def read_index(root: Path) -> dict:
    path = root / "index.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"{root} is not an OCI layout (no index.json)") from None
    except ValueError as e:
        raise BadInput(f"{path} is not valid JSON: {e}") from None


def find_ref(root: Path, ref: str | None) -> Descriptor:
    """The index entry tagged `ref` (or the only entry when ref is None)."""
    # Artifacts that refer to an image (SBOMs, issue 9) are listed untagged: not images.
    entries = [
        Descriptor.from_json(m)
        for m in read_index(root).get("manifests", [])
        if not m.get("artifactType")
    ]
    if ref is None:
        if len(entries) == 1:
            return entries[0]
        names = sorted({dict(e.annotations).get(REF_NAME, "?") for e in entries})
        raise BadInput(
            f"{root} holds {len(entries)} images; name one",
            f"use oci:{root}:REF with REF one of: {', '.join(names[:10])}",
        )
    for e in entries:
        if dict(e.annotations).get(REF_NAME) == ref:
            return e
    raise NotFound(f"no image tagged {ref!r} in OCI layout {root}")


def copy_blob(src: BlobSource, desc: Descriptor, dest: Path) -> int:
    """Put one blob at `dest` (write-once); return the bytes copied (0 if linked or present)."""
    if dest.exists() and dest.stat().st_size == desc.size:
        return 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    local = src.local_path()
    try:
        if local is not None and _try_link(local, tmp, dest):
            return 0
        h = hashlib.sha256()
        n = 0
        with src.open() as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
                n += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        kill_point("layout.blob")  # testhooks: a blob complete under its temp name
        if "sha256:" + h.hexdigest() != desc.digest or n != desc.size:
            raise IntegrityError(
                f"blob {desc.digest} read back as sha256:{h.hexdigest()} ({n} bytes)",
                "the source was damaged; run `imgbuild verify`",
            )
        os.replace(tmp, dest)
        return n
    except OSError as e:
        raise Unavailable(
            f"cannot write {dest}: {e.strerror}", "check space and permissions"
        ) from None
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


def _try_link(src: Path, tmp: Path, dest: Path) -> bool:
    """Hard-link a blob from the store (same filesystem): no bytes copied. Blobs are never
    modified in place, so sharing the inode is safe."""
    with suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        return False
    kill_point("layout.blob")
    os.replace(tmp, dest)
    return True


def write_bytes_blob(root: Path, data: bytes, digest: str) -> None:
    dest = blob_path(root, digest)
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(dest, data)


def _atomic_write(dest: Path, data: bytes) -> None:
    write_atomic(dest, data, fsync=True)


def sweep_dead_temps(root: Path) -> int:
    """Remove the temp files (`.<name>.<thread>.<pid>.tmp`: atomic.temp_path) of writers that
    were killed mid-write, at the top of the layout and among the blobs, so blobs/sha256 holds
    only complete blobs. Only temps whose process is gone (a live writer's file is never
    touched)."""
    removed = 0
    for d in (root, root / "blobs" / "sha256"):
        try:
            names = [n for n in os.listdir(d) if n.startswith(".") and n.endswith(".tmp")]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for n in names:
            pid = n[: -len(".tmp")].rsplit(".", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                with suppress(FileNotFoundError):
                    (d / n).unlink()
                    removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LayoutSink:
    def __init__(self, path: str | os.PathLike, extra_tag: str | None = None) -> None:
        self.root = Path(path).expanduser().absolute()
        self.extra_tag = extra_tag
        self.name = f"oci:{self.root}"

    def ref(self, tag: str) -> str:
        return f"oci:{self.root}:{tag}"

    def write(self, artifact: Artifact, tags: Sequence[str]) -> Written:
        tags = list(dict.fromkeys(list(tags) + ([self.extra_tag] if self.extra_tag else [])))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise Unavailable(f"cannot create {self.root}: {e.strerror}") from None
        sweep_dead_temps(self.root)  # what an earlier, killed write left behind
        if not (self.root / "oci-layout").exists():
            _atomic_write(self.root / "oci-layout", json.dumps(LAYOUT).encode())
        copied = n_blobs = 0
        for desc, src in artifact.blobs():
            dest = blob_path(self.root, desc.digest)
            if not dest.exists():
                n_blobs += 1
                copied += copy_blob(src, desc, dest)
        if isinstance(artifact, ImageIndex):
            for img in artifact.images:
                write_bytes_blob(self.root, img.manifest, img.digest)
        write_bytes_blob(self.root, artifact.manifest, artifact.digest)
        kill_point("layout.index")  # testhooks: every blob written, index.json not yet
        self._tag(artifact.descriptor, tags)
        return Written(
            self.name, artifact.digest, tuple(self.ref(t) for t in tags), n_blobs, copied
        )

    def _tag(self, desc: Descriptor, tags: Sequence[str]) -> None:
        with self._locked():
            try:
                index = read_index(self.root)
            except NotFound:
                index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
            kept = [
                m
                for m in index.get("manifests", [])
                if (m.get("annotations") or {}).get(REF_NAME) not in tags
            ]
            for tag in tags:
                entry = desc.to_json()
                if desc.media_type == MT_INDEX:
                    entry.pop("platform", None)
                entry["annotations"] = {REF_NAME: tag}
                kept.append(entry)
            index["manifests"] = kept
            index.setdefault("schemaVersion", 2)
            index.setdefault("mediaType", MT_INDEX)
            _atomic_write(
                self.root / "index.json", json.dumps(index, indent=1, sort_keys=True).encode()
            )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".imgbuild.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def read_blob(root: Path, digest: str) -> bytes:
    path = blob_path(root, digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"blob {digest} missing from OCI layout {root}") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise IntegrityError(f"blob {digest} in {root} does not match its digest")
    return data
