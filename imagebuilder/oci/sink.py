"""Sinks write image values; they never build anything (go-containerregistry's remote.Write,
layout.Write, tarball.Write). Names follow skopeo's transports (CONTRACT.md: Images):

    oci:DIR[:REF]            an OCI image layout folder (layout.py)
    docker-archive:FILE[:REF] a tar for `docker load` / `podman load` (archive.py)
    docker://HOST/REPO[:TAG] a registry repository (registry.py, the push issue)
    HOST/REPO[:TAG]          the same, bare

REF/TAG, when given, is one more tag next to the standard ones (`<full_id16>[-variant]`,
alias tags).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imagebuilder.errors import UsageError
from imagebuilder.ids import TAG_RE
from imagebuilder.oci.image import Artifact

_HOST = re.compile(
    r"^(localhost|[A-Za-z0-9.-]+\.[A-Za-z0-9.-]+|[A-Za-z0-9.-]+:\d+|\[[0-9a-fA-F:]+\](:\d+)?)$"
)


@dataclass(frozen=True)
class Written:
    """What a sink wrote: the digest and every reference that now names it."""

    sink: str
    digest: str
    refs: tuple[str, ...]
    blobs_written: int = 0
    bytes_written: int = 0

    def to_json(self) -> dict:
        return {
            "sink": self.sink,
            "digest": self.digest,
            "refs": list(self.refs),
            "blobs_written": self.blobs_written,
            "bytes_written": self.bytes_written,
        }


class Sink(Protocol):
    name: str  # display form, e.g. "oci:/home/me/.imgbuild/oci"
    extra_tag: str | None  # the REF/TAG given in the sink name, if any

    def ref(self, tag: str) -> str:
        """The full reference of `tag` in this sink (what `imgbuild image` prints)."""
        ...

    def write(self, artifact: Artifact, tags: Sequence[str]) -> Written: ...


def split_ref(rest: str) -> tuple[str, str | None]:
    """'DIR:REF' -> (DIR, REF) when the part after the last ':' is a valid tag."""
    head, sep, tail = rest.rpartition(":")
    if sep and head and TAG_RE.match(tail) and "/" not in tail:
        return head, tail
    return rest, None


def parse_sink(text: str | None, config=None) -> Sink:
    """A sink from its name; None -> `registry` from config when set, else oci:<oci_dir>."""
    if text is None:
        registry = config.get("registry") if config is not None else None
        if registry:
            return _registry(registry, config)
        from imagebuilder.config import load_config

        cfg = config or load_config()
        text = f"oci:{cfg.oci_dir}"
    if text.startswith("oci:"):
        from imagebuilder.oci.layout import LayoutSink

        path, ref = split_ref(text[len("oci:") :])
        if not path:
            raise UsageError("oci: needs a folder", "e.g. --to oci:./images")
        return LayoutSink(path, ref)
    if text.startswith("docker-archive:"):
        from imagebuilder.oci.archive import ArchiveSink

        path, ref = split_ref(text[len("docker-archive:") :])
        if not path:
            raise UsageError(
                "docker-archive: needs a file name", "e.g. --to docker-archive:env.tar"
            )
        return ArchiveSink(path, ref)
    if text.startswith("docker://"):
        return _registry(text[len("docker://") :], config)
    first = text.split("/", 1)[0]
    if "/" in text and "://" not in text and _HOST.match(first):
        return _registry(text, config)
    raise UsageError(
        f"unknown sink {text!r}",
        "use oci:DIR[:REF], docker-archive:FILE.tar, docker://HOST/REPO or HOST/REPO",
    )


def _registry(ref: str, config) -> Sink:
    try:
        from imagebuilder.oci import registry
    except ImportError:
        raise UsageError(
            f"pushing to a registry ({ref}) is not available in this build",
            "write to oci:DIR or docker-archive:FILE.tar, then copy with skopeo",
        ) from None
    return registry.registry_sink(ref, config)
