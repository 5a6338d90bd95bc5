"""`docker-archive:FILE.tar[:REF]`: a tar that `docker load` and `podman load` read.

The classic format (manifest.json with Config, RepoTags, Layers): layers are stored
uncompressed as `<diff_id hex>/layer.tar`, the form every loader accepts (zstd layers are not
loadable by older Docker engines). Each layer is decompressed to a temp file next to the
output (its size goes into the tar header first) and checked against its diff_id. The archive
appears under its final name only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from imagebuilder.errors import IntegrityError, Unavailable, UsageError
from imagebuilder.oci.image import Artifact, Image, ImageIndex
from imagebuilder.oci.layer import decompressor
from imagebuilder.oci.sink import Written

DEFAULT_REPO = "imgbuild"


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    return info


class ArchiveSink:
    def __init__(self, path: str | os.PathLike, extra_tag: str | None = None) -> None:
        self.path = Path(path).expanduser().absolute()
        self.extra_tag = extra_tag
        self.name = f"docker-archive:{self.path}"

    def ref(self, tag: str) -> str:
        return f"{self.name}:{self._repo_tag(tag)}"

    @staticmethod
    def _repo_tag(tag: str) -> str:
        # REF may be a full "repo:tag" (skopeo's docker-archive:FILE:REF form) or a bare tag.
        return tag if ":" in tag or "/" in tag else f"{DEFAULT_REPO}:{tag}"

    def write(self, artifact: Artifact, tags: Sequence[str]) -> Written:
        if isinstance(artifact, ImageIndex):
            raise UsageError(
                "a docker-archive holds one platform, and this environment has "
                f"{len(artifact.images)} ({', '.join(str(i.platform) for i in artifact.images)})",
                "pass --arch to pick one, or write to oci:DIR",
            )
        image: Image = artifact
        tags = list(dict.fromkeys(list(tags) + ([self.extra_tag] if self.extra_tag else [])))
        repo_tags = [self._repo_tag(t) for t in tags]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        tmp_layer = self.path.with_name(f".{self.path.name}.{os.getpid()}.layer")
        try:
            with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
                config_name = f"{image.config_descriptor.hex}.json"
                tar.addfile(_member(config_name, len(image.config)), _bytes(image.config))
                names = []
                done: set[str] = set()
                for layer in image.layers:
                    hexd = layer.diff_id.split(":", 1)[1]
                    name = f"{hexd}/layer.tar"
                    names.append(name)
                    if hexd in done:
                        continue
                    done.add(hexd)
                    size = _decompress(layer, tmp_layer)
                    tar.addfile(_dir(hexd))
                    with open(tmp_layer, "rb") as f:
                        tar.addfile(_member(name, size), f)
                manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": names}]
                data = json.dumps(manifest, sort_keys=True).encode()
                tar.addfile(_member("manifest.json", len(data)), _bytes(data))
            os.replace(part, self.path)
        except OSError as e:
            raise Unavailable(
                f"cannot write {self.path}: {e.strerror}", "check space and permissions"
            ) from None
        finally:
            for p in (part, tmp_layer):
                with suppress(FileNotFoundError):
                    p.unlink()
        return Written(
            self.name,
            image.digest,
            tuple(self.ref(t) for t in tags),
            len(image.layers) + 1,
            self.path.stat().st_size,
        )


def _bytes(data: bytes):
    import io

    return io.BytesIO(data)


def _decompress(layer, dest: Path) -> int:
    h = hashlib.sha256()
    n = 0
    with layer.source.open() as f, open(dest, "wb") as out:
        for chunk in decompressor(layer.descriptor.media_type)(f):
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
    if "sha256:" + h.hexdigest() != layer.diff_id:
        raise IntegrityError(
            f"layer {layer.descriptor.digest} does not decompress to its diff_id {layer.diff_id}",
            "the blob was damaged; run `imgbuild verify`",
        )
    return n
