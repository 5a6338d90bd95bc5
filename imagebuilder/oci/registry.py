"""`docker://HOST/REPO` (or bare `HOST/REPO`): the registry sink, pushing like crane and ko.

Order of a push (a failure at any point leaves no tag naming something incomplete):
1. HEAD the manifest by digest: present means every blob is there too (registries refuse
   manifests whose blobs are missing), so a no-op push sends no blob request at all.
2. Every blob in parallel (bounded): HEAD; if missing, mount it across repositories when the
   registry has it elsewhere (the base image's repository, or a repository this process pushed
   it to), else upload (upload.py: monolithic or chunked, retried, verified).
3. Per-arch manifests, then the index, each PUT by digest as exact bytes. A manifest refused
   for an unknown blob (MANIFEST_BLOB_UNKNOWN) makes the sink HEAD its blobs again, upload any
   missing, and retry: registries with eventually consistent storage answer so for a moment
   after an upload, and docker-registry does while another client re-uploads a shared blob.
4. Tags last: `<full_id16>[-variant]`, alias tags, the sink's own tag; a tag already at the
   digest is left alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from imagebuilder.oci.image import Artifact, BlobSource, Descriptor, ImageIndex
from imagebuilder.oci.sink import Written
from imagebuilder.registry.base_remote import RemoteBlob, client_for, is_insecure
from imagebuilder.registry.client import ManifestBlobUnknown, RegistryClient
from imagebuilder.registry.reference import Reference, parse_reference
from imagebuilder.registry.upload import mount_blob, upload_blob
from imagebuilder.testhooks import kill_point

DEFAULT_JOBS = 6
MANIFEST_ATTEMPTS = 4  # PUTs of one manifest refused for an unknown blob before giving up

# Blobs this process pushed, per registry host: digest -> repository (mount sources).
_pushed: dict[str, dict[str, str]] = {}
_pushed_lock = threading.Lock()


def registry_sink(text: str, config=None, insecure: bool = False) -> RegistrySink:
    """The sink for `HOST[:PORT]/REPO[:TAG]` (the entry point sink.parse_sink calls)."""
    ref = parse_reference(text)
    if ref.digest:
        from imagebuilder.errors import UsageError

        raise UsageError(
            f"cannot push to a digest ({text})", "name a repository, optionally with :TAG"
        )
    return RegistrySink(ref, is_insecure(ref.registry, config, insecure))


@dataclass
class PushStats:
    blobs_present: int = 0
    blobs_mounted: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


class RegistrySink:
    def __init__(self, reference: Reference, insecure: bool = False, jobs: int = DEFAULT_JOBS):
        self.reference = reference
        self.repo = reference.repository
        self.extra_tag = reference.tag
        self.insecure = insecure
        self.jobs = max(1, jobs)
        self.name = f"docker://{reference.name}"
        self.stats = PushStats()
        self._stats_lock = threading.Lock()

    @property
    def client(self) -> RegistryClient:
        c = client_for(self.reference.registry, self.insecure)
        c.push_repos.add(self.repo)
        return c

    def ref(self, tag: str) -> str:
        return f"{self.reference.name}:{tag}"

    def write(self, artifact: Artifact, tags: Sequence[str]) -> Written:
        tags = list(dict.fromkeys([*tags, *([self.extra_tag] if self.extra_tag else [])]))
        client = self.client
        _ensure_ecr_repository(self.reference)
        self.stats = PushStats()
        blobs = list(artifact.blobs())
        if client.manifest_digest(self.repo, artifact.digest) is None:
            self._push_blobs(client, blobs)
            kill_point("push.manifest")  # testhooks: every blob uploaded, no manifest yet
            if isinstance(artifact, ImageIndex):
                for img in artifact.images:
                    self._put(client, img.digest, img.manifest, img.media_type, blobs)
            self._put(client, artifact.digest, artifact.manifest, artifact.media_type, blobs)
        for tag in tags:
            if client.manifest_digest(self.repo, tag) != artifact.digest:
                kill_point("push.tag")  # testhooks: manifest stored by digest, tag not moved
                self._put(client, tag, artifact.manifest, artifact.media_type, blobs)
        return Written(
            self.name,
            artifact.digest,
            tuple(self.ref(t) for t in tags),
            self.stats.blobs_uploaded,
            self.stats.bytes_uploaded,
        )

    def _put(self, client: RegistryClient, ref: str, raw: bytes, media_type: str, blobs) -> None:
        for attempt in range(MANIFEST_ATTEMPTS):
            try:
                client.put_manifest(self.repo, ref, raw, media_type)
                return
            except ManifestBlobUnknown:
                if attempt + 1 == MANIFEST_ATTEMPTS:
                    raise
            time.sleep(client.backoff * 2**attempt)
            self._push_blobs(client, blobs)  # HEAD each again; upload what is really missing

    # --- blobs ----------------------------------------------------------------------------

    def _push_blobs(self, client: RegistryClient, blobs: list[tuple[Descriptor, BlobSource]]):
        if not blobs:
            return
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        pool = ThreadPoolExecutor(max_workers=min(self.jobs, len(blobs)))
        try:
            futures = [pool.submit(self._push_blob, client, d, s) for d, s in blobs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _push_blob(self, client: RegistryClient, desc: Descriptor, src: BlobSource) -> None:
        if client.blob_exists(self.repo, desc.digest):
            self._count(present=1)
            return
        for origin in self._mount_sources(desc, src):
            if mount_blob(client, self.repo, desc.digest, origin):
                self._count(mounted=1)
                self._remember(desc.digest)
                return
        sent = upload_blob(client, self.repo, desc.digest, desc.size, src.open)
        kill_point("push.blob")  # testhooks: one blob uploaded (others may be in flight)
        self._count(uploaded=1, nbytes=sent)
        self._remember(desc.digest)

    def _mount_sources(self, desc: Descriptor, src: BlobSource) -> Iterable[str]:
        seen = {self.repo}
        if isinstance(src, RemoteBlob) and src.registry == self.reference.registry:
            seen.add(src.repository)
            yield src.repository
        with _pushed_lock:
            other = _pushed.get(self.reference.registry, {}).get(desc.digest)
        if other and other not in seen:
            yield other

    def _remember(self, digest: str) -> None:
        with _pushed_lock:
            _pushed.setdefault(self.reference.registry, {})[digest] = self.repo

    def _count(self, present=0, mounted=0, uploaded=0, nbytes=0) -> None:
        with self._stats_lock:
            self.stats.blobs_present += present
            self.stats.blobs_mounted += mounted
            self.stats.blobs_uploaded += uploaded
            self.stats.bytes_uploaded += nbytes


def _ensure_ecr_repository(ref: Reference) -> None:
    from imagebuilder.registry.ecr import ensure_repository, parse_ecr_host

    ecr = parse_ecr_host(ref.registry)
    if ecr:
        ensure_repository(ecr[1], ref.repository, ecr[0])


def open_remote_base(ref: str, platform, config=None, insecure: bool = False):
    """A base image by registry reference (the entry point base.open_base calls)."""
    from imagebuilder.registry.base_remote import fetch_base

    return fetch_base(ref, platform, config, insecure)
