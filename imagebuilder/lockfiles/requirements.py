"""requirements.txt with hashes: what `pip-compile --generate-hashes`, `uv pip compile
--generate-hashes` and `imgbuild export --format requirements` write.

Every requirement must be pinned (`name==version` or `name @ URL`) and carry `--hash`: that is
what makes the file a lock. Which file a pin means: the URL of a `# url: URL` comment just
before it (imgbuild writes one), else the file of that name whose sha256 is among the hashes,
found on the file's indexes (`--index-url`, `--extra-index-url`, `--find-links`), best wheel for
the target first. Conda packages of a mixed env are kept as `# conda: URL#SHA256` comments:
pip ignores them, imgbuild reads them back, so the round trip keeps the whole env.
"""

from __future__ import annotations

import re
import shlex

from imagebuilder.env import Package, ResolvedEnv
from imagebuilder.errors import BadInput
from imagebuilder.lockfiles.base import Locked, ReadContext
from imagebuilder.lockfiles.packages import (
    check_sha256,
    conda_package,
    pypi_package,
    url_fragment_hash,
)
from imagebuilder.lockfiles.target import Target
from imagebuilder.urls import strip_credentials

_CONDA = re.compile(r"^#\s*conda:\s*(\S+)#(?:sha256[:=])?([0-9a-fA-F]{64})\s*$")
_URL = re.compile(r"^#\s*url:\s*(\S+)\s*$")
_HASH = re.compile(r"--hash[=\s]+(?:sha256:)?(\S+)")
_OPTS_WITH_VALUE = {
    "-i": "index",
    "--index-url": "index",
    "--extra-index-url": "extra",
    "-f": "find_links",
    "--find-links": "find_links",
}


def sniff(text: str) -> bool:
    return "--hash" in text or any(_CONDA.match(x.strip()) for x in text.splitlines())


def _logical_lines(text: str):
    """(lineno, line) with backslash continuations joined; comment-only lines kept as is."""
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        yield start, buf.strip()
        buf = ""
    if buf.strip():
        yield start, buf.strip()


def read(text: str, ctx: ReadContext) -> Locked:
    index, extras, find_links = None, [], []
    conda: list[Package] = []
    pins: list[tuple[str, str, list[str], str | None]] = []  # (where, req, hashes, url)
    pending_url = None
    for lineno, line in _logical_lines(text):
        where = f"{ctx.where}line {lineno}: "
        if not line:
            continue
        if line.startswith("#"):
            if m := _CONDA.match(line):
                conda.append(conda_package(m.group(1), sha256=m.group(2).lower(), where=where))
            elif m := _URL.match(line):
                pending_url = m.group(1)
            continue
        line = re.sub(r"\s+#.*$", "", line)
        if line.startswith("-") and not line.startswith("--hash"):
            try:
                tokens = shlex.split(line)
            except ValueError as e:
                raise BadInput(f"{where}cannot parse {line!r}: {e}") from None
            opt, _, val = tokens[0].partition("=")
            val = val or (tokens[1] if len(tokens) > 1 else "")
            kind = _OPTS_WITH_VALUE.get(opt)
            if kind == "index":
                index = val
            elif kind == "extra":
                extras.append(val)
            elif kind == "find_links":
                find_links.append(val)
            elif opt in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable"):
                raise BadInput(
                    f"{where}{opt} is not supported in a lock file",
                    "inline the included file, or resolve it with `imgbuild resolve -r`",
                )
            continue  # --no-index, --pre, --only-binary, ...: no effect on what is pinned
        # Requirement text keeps its quotes (markers); only the --hash options are cut out.
        hashes = [m.group(1) for m in _HASH.finditer(line)]
        req = _HASH.sub(" ", line).strip()
        pins.append((where, req, [h.lower() for h in hashes], pending_url))
        pending_url = None
    python = next((p.version for p in conda if p.name == "python"), None) or ctx.python
    target = Target.make(ctx.arch, python)
    indexes = tuple(i for i in (index, *extras) if i)
    pypi = []
    for where, req, hashes, url in pins:
        p = _pin(where, req, hashes, url, target, indexes, tuple(find_links), ctx)
        if p is not None:
            pypi.append(p)
    if not conda and not pypi:
        raise BadInput(f"{ctx.where}lists no packages for {ctx.arch}")
    return Locked(
        tuple(conda + pypi),
        channels=tuple(dict.fromkeys(p.channel for p in conda if p.channel)),
        indexes=indexes,
        find_links=tuple(find_links),
        python=target.python if pypi and not any(p.name == "python" for p in conda) else None,
    )


def _pin(where, req, hashes, url, target: Target, indexes, find_links, ctx: ReadContext):
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        r = Requirement(req)
    except InvalidRequirement as e:
        raise BadInput(f"{where}bad requirement {req!r}: {e}") from None
    if r.marker is not None and not target.marker_true(str(r.marker)):
        return None
    if r.url:
        base, frag_sha = url_fragment_hash(r.url)
        sha = frag_sha or (hashes[0] if len(hashes) == 1 else None)
        if not sha:
            raise BadInput(f"{where}{r.name} @ URL needs one --hash=sha256:", "add the file's hash")
        return pypi_package(base, sha256=sha, arch=target.arch, name=r.name, where=where)
    pinned = [s.version for s in r.specifier if s.operator in ("==", "===")]
    if len(pinned) != 1 or "*" in pinned[0]:
        raise BadInput(
            f"{where}{req!r} is not pinned",
            "a lock pins every package with == and --hash (uv pip compile --generate-hashes)",
        )
    if not hashes:
        raise BadInput(
            f"{where}{r.name}=={pinned[0]} has no --hash",
            "generate the file with hashes (uv pip compile --generate-hashes)",
        )
    for h in hashes:
        check_sha256(h, f"{where}{r.name}")
    if url:
        base, _ = url_fragment_hash(url)
        return pypi_package(base, sha256=hashes[0], arch=target.arch, name=r.name,
                            version=pinned[0], where=where)  # fmt: skip
    return _find(where, r.name, pinned[0], set(hashes), target, indexes, find_links, ctx)


def _find(where, name, version, hashes, target: Target, indexes, find_links, ctx: ReadContext):
    if ctx.lookup is None:
        raise BadInput(f"{where}{name}=={version}: no URL and no index to look it up in")
    files = ctx.lookup.index_files(indexes, find_links, name)
    matching = {fn: (url, sha) for fn, url, sha in files if sha and sha.lower() in hashes}
    wheels = [fn for fn in matching if fn.endswith(".whl")]
    best = target.best_wheel(wheels)
    if best is None:
        sdists = [fn for fn in matching if not fn.endswith(".whl")]
        if not sdists:
            shown = ", ".join(strip_credentials(i) for i in (*indexes, *find_links)) or "PyPI"
            raise BadInput(
                f"{where}no file of {name}=={version} with a listed hash fits {target.arch} / "
                f"python {target.python} on {shown}",
                "pass --arch/--python for the platform the file was locked for",
            )
        best = sorted(sdists)[0]
    url, sha = matching[best]
    return pypi_package(url, sha256=sha, arch=target.arch, name=name, version=version, where=where)


def write(envs: list[ResolvedEnv]) -> str:
    (env,) = envs
    lines = [
        f"# Written by `imgbuild export --format requirements` from {env.name} ({env.arch}).",
        "# Install the PyPI part with: pip install --no-deps --require-hashes -r <this file>",
    ]
    conda = env.conda_packages()
    if conda:
        lines.append("# The env's conda packages (pip skips them; imgbuild reads them back):")
        lines += [f"# conda: {p.url}#sha256:{p.sha256}" for p in conda]
    for i, url in enumerate(env.spec.indexes):
        lines.append(f"{'--index-url' if i == 0 else '--extra-index-url'} {url}")
    lines += [f"--find-links {u}" for u in env.spec.find_links]
    for p in env.pypi_packages():
        lines.append(f"# url: {p.url}")
        pin = f"{p.name}=={p.version}" if not p.is_source else f"{p.name} @ {p.url}"
        lines.append(f"{pin} \\\n    --hash=sha256:{p.sha256}")
    return "\n".join(lines) + "\n"
