"""The base image's python, for envs resolved with `--python-from-base` (a venv on it).

Found by reading the base's layer tars (names only, through tarscan.py; whiteouts applied),
not by running the image: bakes need no container engine and work across arches. Where
images put it: `/usr/local/bin/pythonX.Y` (python:X.Y images, built from source) before
`/usr/bin/pythonX.Y` (distribution packages). The venv's own files (pyvenv.cfg, bin/python -> that interpreter)
are what `install/venv.py` writes for hydrated venvs, here as layer entries.
"""

from __future__ import annotations

import posixpath

from imagebuilder.errors import BadInput
from imagebuilder.install.venv import links, pyvenv_cfg
from imagebuilder.oci.base import Base
from imagebuilder.oci.layer import Entry, decompressed
from imagebuilder.tarscan import SYMLINK, TarError, scan

CANDIDATES = ("usr/local/bin/python{xy}", "usr/bin/python{xy}", "opt/python/bin/python{xy}")


def _names(base: Base) -> dict[str, str | None]:
    """Every path of the base's filesystem -> its symlink target (None for other kinds)."""
    seen: dict[str, str | None] = {}
    for n, layer in enumerate(base.layers, 1):
        with layer.source.open() as f:
            try:
                members = list(scan(decompressed(layer.descriptor.media_type, f), hash_files=False))
            except TarError as e:
                raise BadInput(f"base {base.name}: layer {n} is not a readable tar ({e})") from None
        for m in members:
            name = m.name[2:] if m.name.startswith("./") else m.name
            name = posixpath.normpath(name.lstrip("/") or ".")
            head, tail = posixpath.split(name)
            if tail == ".wh..wh..opq":  # opaque dir: lower layers' children are gone
                for k in [k for k in seen if k.startswith(head + "/")]:
                    del seen[k]
            elif tail.startswith(".wh."):
                gone = posixpath.join(head, tail[4:])
                for k in [k for k in seen if k == gone or k.startswith(gone + "/")]:
                    del seen[k]
            else:
                seen[name] = m.linkname if m.kind == SYMLINK else None
    return seen


def _resolve(names: dict[str, str | None], path: str) -> str | None:
    """`path` with symlinked parent folders followed (merged /usr: bin -> usr/bin), if it is
    there."""
    from imagebuilder.oci.baseroot import resolve_inside

    links = {k: v for k, v in names.items() if v is not None}
    try:
        out = resolve_inside(links, path, follow_last=False)
    except ValueError:  # a symlink loop in a base must not hang the bake
        return None
    return out if out in names else None


def _search(base: Base, xy: str) -> str | None:
    names = _names(base) if not base.is_scratch else {}
    for c in CANDIDATES:
        rel = c.format(xy=xy)
        if _resolve(names, rel) is not None:
            return "/" + rel
    return None


def _remembered(base: Base, xy: str) -> str | None:
    """_search, remembered per base digest in the local cache: a remote base's layers are
    otherwise downloaded on every push of a venv env just to read their names."""
    if base.digest is None:
        return _search(base, xy)
    from imagebuilder.store.localcache import remembered

    name = f"{base.digest.split(':')[-1]}-{xy}"
    return remembered("base-python", name, lambda: _search(base, xy))


def find_python(base: Base, xy: str) -> str:
    """The absolute path of the base's pythonX.Y (BadInput naming what was looked for)."""
    found = _remembered(base, xy)
    if found is not None:
        return found
    looked = ", ".join("/" + c.format(xy=xy) for c in CANDIDATES)
    raise BadInput(
        f"base {base.name} has no python{xy} (looked for {looked}); this environment is a venv "
        "on the base's python (--python-from-base)",
        f"push with --base naming an image that has Python {xy} (e.g. python:{xy}-slim), or "
        "resolve without --python-from-base so python comes from conda",
    )


def venv_entries(prefix: str, python: str, xy: str) -> list[Entry]:
    """The venv skeleton on `python` (install/venv.py's files, for the image prefix)."""
    p = prefix.strip("/")
    return [
        Entry(f"{p}/pyvenv.cfg", "file", data=pyvenv_cfg(python, xy).encode()),
        *(Entry(f"{p}/{rel}", "symlink", target=target) for rel, target in links(python, xy)),
    ]
