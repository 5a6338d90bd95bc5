"""Image references: `[docker://]HOST[:PORT]/REPO[:TAG][@DIGEST]`, parsed the way docker does.

The first path part names a registry when it has a `.` or `:` or is `localhost`; otherwise the
reference is on Docker Hub (`docker.io`, `library/` added to one-part names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from imagebuilder.errors import BadInput

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
HOST_RE = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_HINT = "use HOST[:PORT]/REPO[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/team/envs:latest"


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port] as written (docker.io for Docker Hub)
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Host the v2 API lives on (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag (default latest)."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str | None) -> Reference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def is_registry_host(part: str) -> bool:
    return ("." in part or ":" in part or part == "localhost") and bool(HOST_RE.match(part))


def parse_reference(text: str, default_tag: str | None = None) -> Reference:
    """Parse an image reference; `docker://` is accepted and dropped. Raises BadInput."""
    s = text.strip()
    if s.startswith("docker://"):
        s = s[len("docker://") :]
    if not s or "://" in s:
        raise BadInput(f"bad image reference {text!r}", _HINT)
    digest = None
    if "@" in s:
        s, _, digest = s.partition("@")
        if not DIGEST_RE.match(digest):
            raise BadInput(f"bad digest in image reference {text!r}", "digests are sha256:<64 hex>")
    first, slash, rest = s.partition("/")
    if slash and is_registry_host(first):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, s
    tag = None
    # A ':' after the last '/' separates the tag (a ':' before it belongs to host:port).
    head, colon, maybe_tag = path.rpartition(":")
    if colon and "/" not in maybe_tag:
        path, tag = head, maybe_tag
        if not TAG_RE.match(tag):
            raise BadInput(f"bad tag {tag!r} in image reference {text!r}", _HINT)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not REPO_RE.match(path):
        raise BadInput(
            f"bad repository {path!r} in image reference {text!r}",
            "repositories are lowercase a-z 0-9 with . _ - separators and / between parts",
        )
    return Reference(registry, path, tag or (None if digest else default_tag), digest)


def parse_repository(text: str) -> Reference:
    """A `registry` config value: HOST[:PORT]/REPO, no tag or digest."""
    ref = parse_reference(text)
    if ref.tag or ref.digest:
        raise BadInput(
            f"registry {text!r} names a tag or digest",
            "set registry to HOST[:PORT]/REPO; imgbuild chooses the tags",
        )
    return ref
