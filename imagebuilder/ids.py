"""Identity (CONTRACT.md): hashing rules, short ids, env names, and the ENV grammar.

Kept free of heavy imports: every command parses an ENV argument.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from imagebuilder.errors import BadInput

SHORT = 16
HEX = re.compile(r"^[0-9a-f]+$")
NAME_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
MUTABLE_TAGS = frozenset({"latest", "candidate", "stable"})
ENV_NAME_RE = re.compile(r"^metaflow_([0-9a-f]{16}|[0-9a-f]{64})_([0-9a-f]{16}|[0-9a-f]{64})$")
PAIR_RE = re.compile(r"^([0-9a-f]{16}|[0-9a-f]{64}):([0-9a-f]{16}|[0-9a-f]{64})$")


def canonical_json(obj: object) -> str:
    """The one serialization every id hashes (CONTRACT.md)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_json(obj: object) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def short(hex_id: str) -> str:
    return hex_id[:SHORT]


def env_name(req_id: str, full_id: str) -> str:
    return f"metaflow_{short(req_id)}_{short(full_id)}"


def is_hex(s: str) -> bool:
    return bool(HEX.match(s))


# --- ENV grammar ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FullIdRef:
    full_id: str  # 16 or 64 hex

    def __str__(self) -> str:
        return self.full_id


@dataclass(frozen=True)
class PairRef:
    req_id: str
    full_id: str

    def __str__(self) -> str:
        return f"{self.req_id}:{self.full_id}"


@dataclass(frozen=True)
class PathspecRef:
    pathspec: str  # Flow/Run/Step[/Task]

    def __str__(self) -> str:
        return f"mf:{self.pathspec}"


@dataclass(frozen=True)
class AliasRef:
    name: str
    tag: str = "latest"

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def mutable(self) -> bool:
        return self.tag in MUTABLE_TAGS

    @property
    def image_tag(self) -> str:
        """Registry tag for this alias (CONTRACT.md): '/' becomes '__', then '--<tag>'."""
        return f"{self.name.replace('/', '__')}--{self.tag}"


EnvRef = FullIdRef | PairRef | PathspecRef | AliasRef


def parse_env_ref(text: str) -> EnvRef:
    """Parse an ENV argument, trying the forms in CONTRACT.md's order."""
    s = text.strip()
    if not s:
        raise BadInput(
            "empty environment reference", "give a full_id, req_id:full_id, env name or alias"
        )
    low = s.lower()
    if is_hex(low) and len(low) in (16, 64):
        return FullIdRef(low)
    m = PAIR_RE.match(low)
    if m:
        return PairRef(m.group(1), m.group(2))
    m = ENV_NAME_RE.match(low)
    if m:
        return PairRef(m.group(1), m.group(2))
    if s.startswith("mf:"):
        return _pathspec(s[3:], text)
    try:
        return parse_alias(s)
    except BadInput:
        # A bare Flow/Run/Step is accepted too when it cannot be an alias (Flow names are
        # CamelCase, aliases lowercase), because Metaflow users paste pathspecs as they are.
        if 3 <= len(s.split("/")) <= 4 and not NAME_RE.match(s.split(":")[0]):
            return _pathspec(s, text)
        raise


def _pathspec(p: str, text: str) -> PathspecRef:
    parts = p.split("/")
    if not 3 <= len(parts) <= 4 or not all(parts):
        raise BadInput(f"bad pathspec {text!r}", "use mf:Flow/Run/Step or mf:Flow/Run/Step/Task")
    return PathspecRef(p)


def parse_alias(text: str) -> AliasRef:
    name, _, tag = text.partition(":")
    tag = tag or "latest"
    if not NAME_RE.match(name):
        raise BadInput(
            f"bad environment name {name!r}",
            "names are lowercase a-z, 0-9, separators . _ - and / between parts (e.g. team/nlp:stable)",
        )
    if all(
        is_hex(part.replace(".", "").replace("_", "").replace("-", "")) for part in name.split("/")
    ):
        raise BadInput(
            f"bad environment name {name!r}: it is all hex digits and would read as an id",
            "add a letter outside a-f to the name",
        )
    if not TAG_RE.match(tag):
        raise BadInput(
            f"bad tag {tag!r}", "tags are A-Z a-z 0-9 _ . - (up to 128), not starting with . or -"
        )
    return AliasRef(name, tag)
