"""CycloneDX SBOM of an environment: every conda and PyPI package, deterministic bytes.

Each package is a `library` component with its version, a purl (`pkg:conda/NAME@VERSION?build=
&channel=&subdir=&type=`, `pkg:pypi/NAME@VERSION?file_name=`), the sha256 of its archive and
its license where known (conda records carry `license`; for wheels, the METADATA of the cached
wheel when the store is local). Dependencies between packages come from their `depends`.

Same env (and imgbuild version) -> same bytes: the serial number is a UUID derived from the
full_id, the timestamp is the fixed epoch images use (SOURCE_DATE_EPOCH, default 0), and the
library sorts every collection. `validate_sbom` checks the bytes against the CycloneDX schema.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

from imagebuilder.env import CONDA, Package, ResolvedEnv

MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPEC_VERSION = "1.6"
_NAMESPACE = uuid.UUID("6f1b1a52-4c55-4b9e-9d3e-696d67627569")  # imgbuild SBOM serials


def fixed_epoch() -> datetime:
    return datetime.fromtimestamp(int(os.environ.get("SOURCE_DATE_EPOCH", "0")), timezone.utc)


def serial_number(env: ResolvedEnv) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{env.req_id}:{env.full_id}")


def purl(p: Package):
    from packageurl import PackageURL

    if p.kind == CONDA:
        ext = "conda" if p.filename.endswith(".conda") else "tar.bz2"
        q = {"build": p.build, "subdir": p.subdir, "type": ext}
        if p.channel:
            q["channel"] = p.channel
        return PackageURL(type="conda", name=p.name, version=p.version, qualifiers=q)
    q = {"file_name": p.filename}
    host = p.url.split("/")[2] if "://" in p.url else ""
    if host and host != "files.pythonhosted.org":
        q["repository_url"] = p.url.rsplit("/", 1)[0]
    return PackageURL(type="pypi", name=p.name, version=p.version, qualifiers=q)


def wheel_license(store, p: Package) -> str | None:
    """License-Expression (PEP 639), else License, else a License classifier."""
    from imagebuilder.wheelmeta import wheel_metadata

    msg = wheel_metadata(store, p)
    if msg is None:
        return None
    value = msg.get("License-Expression") or msg.get("License")
    if value and len(value) < 200 and "\n" not in value.strip():
        return value.strip()
    classifiers = [c for c in msg.get_all("Classifier") or () if c.startswith("License ::")]
    return classifiers[0].rsplit("::", 1)[-1].strip() if classifiers else None


def license_of(store, p: Package) -> str | None:
    if p.kind == CONDA:
        value = (p.record or {}).get("license")
        return str(value).strip() if value else None
    return wheel_license(store, p)


_SPDX_IDS: dict[str, str] | None = None


def license_entry(value: str):
    """An SPDX id as `id`, an SPDX expression as `expression`, anything else as `name`.

    (cyclonedx's LicenseFactory does the same but imports the whole license-expression
    database, which doubles `imgbuild sbom`'s time; the schema's own id list is enough.)
    """
    global _SPDX_IDS
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression

    if _SPDX_IDS is None:
        from cyclonedx.schema._res import SPDX_JSON

        with open(SPDX_JSON) as f:
            _SPDX_IDS = {i.lower(): i for i in json.load(f).get("enum", [])}
    v = value.strip()
    if v.lower() in _SPDX_IDS:
        return DisjunctiveLicense(id=_SPDX_IDS[v.lower()])
    words = v.replace("(", " ").replace(")", " ").split()
    if any(w in ("AND", "OR", "WITH") for w in words) and all(
        w in ("AND", "OR", "WITH") or w.lower() in _SPDX_IDS or w.startswith("LicenseRef-")
        for w in words
    ):
        return LicenseExpression(v)
    return DisjunctiveLicense(name=v)


def build_sbom(env: ResolvedEnv, store=None) -> bytes:
    """The env's SBOM as CycloneDX 1.6 JSON bytes (deterministic)."""
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    from imagebuilder import __version__

    by_name: dict[tuple[str, str], Component] = {}
    components = []
    for p in env.packages:
        ref = purl(p)
        lic = license_of(store, p)
        c = Component(
            name=p.name,
            version=p.version,
            type=ComponentType.LIBRARY,
            bom_ref=ref.to_string(),
            purl=ref,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=p.sha256)],
            licenses=[license_entry(lic)] if lic else None,
            external_references=[
                ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(p.url))
            ]
            if p.url
            else None,
            properties=[
                Property(name="imgbuild:kind", value=p.kind),
                Property(name="imgbuild:subdir", value=p.subdir),
                Property(name="imgbuild:filename", value=p.filename),
            ],
        )
        components.append(c)
        by_name[(p.kind, p.name)] = c
    env_component = Component(
        name=env.name,
        version=env.full_id,
        type=ComponentType.APPLICATION,
        bom_ref=f"imgbuild:{env.req_id}:{env.full_id}",
        properties=[
            Property(name="imgbuild:req_id", value=env.req_id),
            Property(name="imgbuild:full_id", value=env.full_id),
            Property(name="imgbuild:arch", value=env.arch),
        ],
    )
    tool = Component(name="imgbuild", version=__version__, type=ComponentType.APPLICATION)
    bom = Bom(
        serial_number=serial_number(env),
        metadata=BomMetaData(component=env_component, timestamp=fixed_epoch()),
        components=components,
    )
    bom.metadata.tools.components.add(tool)
    bom.register_dependency(env_component, components)
    for p in env.packages:
        deps = [by_name[k] for k in _dep_keys(p) if k in by_name and by_name[k] is not None]
        deps = [d for d in deps if d is not by_name[(p.kind, p.name)]]
        bom.register_dependency(by_name[(p.kind, p.name)], deps)
    text = JsonV1Dot6(bom).output_as_string(indent=1)
    # Re-serialize with sorted keys: byte-stable whatever order the library emits keys in.
    return (json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n").encode()


def _dep_keys(p: Package) -> list[tuple[str, str]]:
    from packaging.utils import canonicalize_name

    keys = []
    for dep in p.depends:
        if p.kind == CONDA:
            keys.append((CONDA, dep.split()[0]))
        else:
            try:
                from packaging.requirements import Requirement

                keys.append(("pypi", canonicalize_name(Requirement(dep).name)))
            except Exception:  # an unparseable requirement names no edge; identity is unaffected
                continue
    return keys


def validate_sbom(data: bytes) -> None:
    """Raise IntegrityError unless `data` is valid CycloneDX 1.6 JSON."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from imagebuilder.errors import IntegrityError

    err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())
    if err is not None:
        raise IntegrityError(f"SBOM does not validate against CycloneDX {SPEC_VERSION}: {err}")
