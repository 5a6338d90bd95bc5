"""Packages from what lock files say: a conda archive URL + hashes, a wheel or sdist URL + sha256.

Every lock format reduces to these two constructors, so a package imported from any format has
the same identity ([kind, subdir, name, version, build, sha256], CONTRACT.md) as the one the
resolver pinned: conda fields come from the archive's file name and the lock's hashes; PyPI
fields from the wheel file name (PEP 427) the way the resolver records them (subdir "noarch"
for a pure wheel, the target arch for a binary one; build = the wheel's tag triple).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from imagebuilder.env import CONDA, PYPI, Package
from imagebuilder.errors import BadInput
from imagebuilder.urls import normalize_channel, strip_credentials

CONDA_EXTS = (".conda", ".tar.bz2")
SDIST_EXTS = (".tar.gz", ".zip", ".tar.bz2", ".tgz")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def remember_credentials(url: str) -> None:
    """A lock may carry credentials in its URLs: keep them for this process's downloads (the
    package records keep the URL without them)."""
    if "@" in url or "/t/" in url:
        from imagebuilder.sources import remember

        remember(url)


def filename_of(url: str) -> str:
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def split_conda_filename(fn: str) -> tuple[str, str, str]:
    """'python-3.11.7-h_imgb_0.conda' -> ('python', '3.11.7', 'h_imgb_0')."""
    stem = next((fn[: -len(e)] for e in CONDA_EXTS if fn.endswith(e)), None)
    parts = stem.rsplit("-", 2) if stem else []
    if len(parts) != 3 or not all(parts):
        raise BadInput(
            f"{fn!r} is not a conda package file name",
            "conda archives are named NAME-VERSION-BUILD.conda or .tar.bz2",
        )
    return parts[0], parts[1], parts[2]


def build_number_of(build: str) -> int:
    """conda-build's convention: the build string ends with _<build number>."""
    m = re.search(r"(?:^|_)(\d+)$", build)
    return int(m.group(1)) if m else 0


def check_sha256(value: str | None, what: str) -> str:
    v = (value or "").strip().lower().removeprefix("sha256:")
    if not HEX64.match(v):
        raise BadInput(f"{what}: {value!r} is not a sha256 (64 hex digits)")
    return v


def conda_package(
    url: str,
    *,
    sha256: str,
    md5: str | None = None,
    size: int | None = None,
    depends: list[str] | tuple[str, ...] = (),
    constrains: list[str] | tuple[str, ...] = (),
    fields: dict | None = None,
    where: str = "",
) -> Package:
    """A conda package with a rattler RepoDataRecord (as JSON) built from the lock's fields.

    `fields` are extra repodata keys the lock knows (license, timestamp, noarch, build_number):
    they are kept in the record so install and the SBOM see them; identity never uses them.
    """
    remember_credentials(url)
    clean = strip_credentials(url)
    fn = filename_of(clean)
    name, version, build = split_conda_filename(fn)
    parts = urlsplit(clean).path.rstrip("/").split("/")
    if len(parts) < 2:
        raise BadInput(f"{where}: {url!r} has no subdir", "conda URLs end with /SUBDIR/FILE")
    subdir = parts[-2]
    channel = normalize_channel(clean.rsplit("/", 2)[0])
    sha = check_sha256(sha256, f"{where}{fn}")
    record = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": build_number_of(build),
        "subdir": subdir,
        "depends": list(depends),
        "md5": md5,
        "sha256": sha,
        "size": size,
        "fn": fn,
        "url": clean,
        "channel": channel + "/",
    }
    if constrains:
        record["constrains"] = list(constrains)
    for k, v in (fields or {}).items():
        if v is not None and k not in record:
            record[k] = v
    if record.get("noarch") is None and subdir == "noarch":
        # Lock formats that drop the field: python ones are built "py..."/"pyh..." by convention.
        record["noarch"] = "python" if build.startswith("py") else "generic"
    record = {k: v for k, v in record.items() if v is not None}
    if md5 is not None and not HEX32.match(md5):
        raise BadInput(f"{where}{fn}: md5 {md5!r} is not 32 hex digits")
    return Package(
        kind=CONDA,
        subdir=subdir,
        name=name,
        version=version,
        build=build,
        sha256=sha,
        filename=fn,
        url=clean,
        size=size,
        md5=md5,
        depends=tuple(depends),
        channel=channel,
        record=record,
    )


def conda_package_from_record(record: dict, where: str = "") -> Package:
    """From a repodata record (a channel's, or one a lock file carries in full)."""
    url = record.get("url") or ""
    if not url:
        channel = (record.get("channel") or "").rstrip("/")
        url = f"{channel}/{record['subdir']}/{record['fn']}"
    fields = {k: v for k, v in record.items() if k not in ("url", "channel", "fn", "depends")}
    return conda_package(
        url,
        sha256=record.get("sha256") or "",
        md5=record.get("md5"),
        size=record.get("size"),
        depends=record.get("depends") or (),
        constrains=record.get("constrains") or (),
        fields=fields,
        where=where,
    )


def parse_wheel_filename(fn: str) -> tuple[str, str, str]:
    """'six-1.16.0-py2.py3-none-any.whl' -> ('six', '1.16.0', 'py2.py3-none-any')."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name
    from packaging.utils import parse_wheel_filename as parse

    if not fn.endswith(".whl"):
        raise BadInput(f"{fn!r} is not a wheel file name")
    parts = fn[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise BadInput(f"{fn!r} is not a valid wheel file name (PEP 427)")
    try:
        name, version, _, _ = parse(fn)
    except (InvalidWheelFilename, ValueError) as e:
        raise BadInput(f"{fn!r} is not a valid wheel file name: {e}") from None
    return canonicalize_name(name), str(version), "-".join(parts[-3:])


def is_pure_tag(tag: str) -> bool:
    return tag.rsplit("-", 1)[-1] == "any"


def pypi_package(
    url: str,
    *,
    sha256: str,
    arch: str,
    size: int | None = None,
    name: str | None = None,
    version: str | None = None,
    depends: list[str] | tuple[str, ...] = (),
    extra: dict | None = None,
    where: str = "",
) -> Package:
    """A wheel (or an sdist, to be built later) pinned by URL and sha256."""
    from packaging.utils import canonicalize_name

    remember_credentials(url)
    clean = strip_credentials(url.split("#", 1)[0])
    fn = filename_of(clean)
    sha = check_sha256(sha256, f"{where}{fn}")
    if fn.endswith(".whl"):
        wname, wversion, tag = parse_wheel_filename(fn)
        return Package(
            kind=PYPI,
            subdir="noarch" if is_pure_tag(tag) else arch,
            name=canonicalize_name(name) if name else wname,
            version=version or wversion,  # the lock's own spelling, as the resolver keeps it
            build=tag,
            sha256=sha,
            filename=fn,
            url=clean,
            size=size,
            depends=tuple(depends),
            extra=extra or None,
        )
    if fn.endswith(SDIST_EXTS) and name and version:
        return Package(
            kind=PYPI,
            subdir="source",
            name=canonicalize_name(name),
            version=version,
            build="",
            sha256=sha,
            filename=fn,
            url=clean,
            size=size,
            depends=tuple(depends),
            source="sdist",
            extra=extra or None,
        )
    raise BadInput(
        f"{where}{fn}: only wheels and sdists with a name and version can be imported",
        "lock the package as a wheel, or resolve the request instead of importing it",
    )


def url_fragment_hash(url: str) -> tuple[str, str | None]:
    """'https://x/a.whl#sha256=ab..' -> ('https://x/a.whl', 'ab..'); no fragment -> (url, None)."""
    base, _, frag = url.partition("#")
    for item in frag.split("&"):
        algo, _, value = item.partition("=")
        if algo.lower() == "sha256" and value:
            return base, value.lower()
    return base, None


def conda_depends_dict(depends: tuple[str, ...] | list[str]) -> dict[str, str]:
    """['python >=3.8', 'six'] -> {'python': '>=3.8', 'six': '*'} (conda-lock's shape)."""
    out: dict[str, str] = {}
    for dep in depends:
        name, _, rest = dep.strip().partition(" ")
        out[name] = rest.strip() or "*"
    return out


def pip_depends_list(depends: dict[str, str] | None) -> list[str]:
    """{'urllib3': '>=1.21,<3', 'six': '*'} -> ['urllib3>=1.21,<3', 'six'] (PEP 508)."""
    return [
        name if spec in ("", "*") else f"{name}{spec}" for name, spec in (depends or {}).items()
    ]


def conda_depends_list(depends: dict[str, str] | None) -> list[str]:
    return [
        name if spec in ("", "*") else f"{name} {spec}" for name, spec in (depends or {}).items()
    ]
