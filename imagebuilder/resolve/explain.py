"""Solver and network failures as one clear line: what failed, the chain of who needs what,
where the request came from (file:line or flag), and what to change.

rattler reports conflicts as a tree ("X 1.0 would require / Y >=2, which ..."); uv as prose
("Because X==1.0 depends on Y<1.0 and you require Y==1.16.0, ..."). Both are condensed here.
"""

from __future__ import annotations

import re

from imagebuilder.errors import BadInput, Conflict, ImgbuildError, NotFound, Unavailable
from imagebuilder.spec import EnvSpec
from imagebuilder.urls import redact, strip_credentials

_TOP_MISSING = re.compile(r"No candidates were found for ([A-Za-z0-9_.\-]+)\s*([^\n]*?)\.?$", re.M)
_LEAF_MISSING = re.compile(r"([A-Za-z0-9_.\-]+)[ \t]*([^,\n]*), for which no candidates were found")
_URL = re.compile(r"(?:https?|file)://[^\s)'\"]+")
_PORT = re.compile(r"(?<=[\w\]]):\d{1,5}\b")
_SUBDIR_FILE = re.compile(r"/(?:noarch|linux-64|linux-aarch64|osx-64|osx-arm64|win-64)/[^/]*$")


def _where(spec: EnvSpec, name: str, kind: str = "conda") -> str:
    """'requirements.txt:3' for the request item of `kind` naming package `name`, else ''."""
    items = set(spec.pypi if kind == "pypi" else spec.conda)
    for req, where in spec.origins:
        if req not in items:
            continue
        head = re.split(r"[\s<>=!~;\[@]", req.split("::")[-1], maxsplit=1)[0].lower()
        if head == name.lower():
            return where
    return ""


def _origin(spec: EnvSpec, name: str, kind: str = "conda") -> str:
    """' (requirements.txt:3)' or ''."""
    where = _where(spec, name, kind)
    return f" ({where})" if where else ""


def missing_names(message: str) -> list[str]:
    names = [m.group(1) for m in _TOP_MISSING.finditer(message)]
    return list(dict.fromkeys(names))


# --- conda ------------------------------------------------------------------------------------


def _tree(message: str) -> list[tuple[int, str]]:
    """(depth, text) of the rows of rattler's problem tree. When one package alone fails, the
    header line itself is the root ("...because of: X * cannot be installed ...")."""
    lines = message.splitlines()
    if not lines:
        return []
    header = lines[0].split("because of:", 1)[-1].strip()
    shift = 0 if header.startswith("The following packages are incompatible") else 1
    out = [(0, header)] if shift else []
    for line in lines[1:]:
        m = re.match(r"^([\s│├└─]*?)(?:[├└]─ )(.*)$", line)
        if m:
            out.append((len(m.group(1)) // 3 + shift, m.group(2).strip()))
    return out


def _chains(message: str) -> list[tuple[str, list[str]]]:
    """For each requested package of the tree: its name and the requirement chain along the
    first path down, e.g. ("deep", ["conflict-a *", "shared <2"]). Even depths are
    requirements ("shared <2, which ..."), odd depths the candidates ("conflict-a 1.0 ...")."""
    out: list[tuple[str, list[str]]] = []
    chain: list[str] = []
    depth = 0
    for d, text in _tree(message):
        if d == 0:
            chain = []
            out.append((text.split()[0], chain))
            depth = 0
        elif d == depth + 1:
            depth = d
            if d % 2 == 0 and len(chain) < 4:
                chain.append(text.split(",")[0].strip())
    return out


def conda_failure(message: str, spec: EnvSpec, available: dict[str, list[str]]) -> ImgbuildError:
    where = f"{spec.arch}"
    top = list(_TOP_MISSING.finditer(message))
    if top and "would require" not in message:
        m = top[0]
        name, constraint = m.group(1), m.group(2).strip().rstrip(".")
        origin = _origin(spec, name)
        channels = ", ".join(spec.channels) or "(none)"
        if name in available:
            found = ", ".join(available[name][-8:])
            newer = f" published before {spec.exclude_newer}" if spec.exclude_newer else ""
            return NotFound(
                f"no version of {name}{newer} matches {constraint or '*'}{origin} for {where} "
                f"(the channels have {found})",
                "relax the version constraint, or add the channel that has it (-c URL)",
            )
        return NotFound(
            f"no package named {name}{origin} in {channels} for {where}",
            "check the spelling and the channels (-c URL, in priority order)",
        )
    chains = _chains(message)
    leaf = _LEAF_MISSING.search(message)
    if leaf and leaf.group(1).startswith("__"):
        vname, vspec = leaf.group(1), leaf.group(2).strip()
        from imagebuilder.platforms import virtual_packages

        have = virtual_packages(spec.arch, spec.sys).get(vname)
        who = "; ".join(_phrase(spec, root, chain) for root, chain in chains) or vname
        return Conflict(
            f"cannot resolve for {where}: {who}, but the target provides "
            f"{vname + ' ' + have if have else 'no ' + vname}",
            f"if the machines that run this env have it, say so: --sys-pkg {vname}=="
            f"{re.sub(r'[^0-9.]', '', vspec) or 'VERSION'}",
        )
    if leaf and "conflicts with" not in message and "incompatible" not in message:
        phrase = "; ".join(_phrase(spec, r, c) for r, c in chains)
        return NotFound(
            f"cannot resolve for {where}: {phrase}, which no channel has",
            "add the channel that has it (-c URL) or pin an older version of the package",
        )
    phrases = [_phrase(spec, root, chain) for root, chain in chains]
    body = " but ".join(phrases) if phrases else message.splitlines()[0]
    return Conflict(
        f"conda packages conflict for {where}: {body}",
        "change or drop one of these requirements (rerun with --debug for the solver's tree)",
    )


def _phrase(spec: EnvSpec, root: str, chain: list[str]) -> str:
    origin = _origin(spec, root)
    if not chain:
        return f"{root}{origin}"
    return f"{root}{origin} needs " + ", which needs ".join(chain)


def channel_failure(message: str, spec: EnvSpec) -> ImgbuildError:
    urls = _URL.findall(message)
    url = strip_credentials(urls[0]) if urls else ""
    channel = _SUBDIR_FILE.sub("", url).rstrip("/") or ", ".join(spec.channels)
    return _unavailable("conda channel", channel, message)


def _unavailable(what: str, url: str, message: str) -> ImgbuildError:
    # Status codes are looked for with URLs and ports blanked out: a channel on port 40345
    # is not an HTTP 403 (a CI run drew that port: its TLS failure read as "refused access").
    scan = _PORT.sub(":<port>", _URL.sub("<url>", message))
    low = scan.lower()
    status = re.search(r"\b(4\d\d|5\d\d)\b[^\n]*", scan)
    if re.search(r"\b40[13]\b", low) or "unauthorized" in low or "forbidden" in low:
        return Unavailable(
            f"{what} {url} refused access ({status.group(0).strip() if status else 'denied'})",
            "check the credentials for it (user:password@ or a token in the URL, "
            '[auth."HOST"] in imgbuild.toml, or ~/.netrc; see docs/config.md)',
        )
    if "certificate" in low or "unknownissuer" in low or "certificate_verify_failed" in low:
        return Unavailable(
            f"cannot reach {what} {url}: its TLS certificate is not trusted",
            "point SSL_CERT_FILE or REQUESTS_CA_BUNDLE at the CA bundle that signed it "
            "(`imgbuild config show` lists the one in use)",
        )
    if status and status.group(1) == "404":
        return Unavailable(
            f"{what} {url} was not found (HTTP 404)",
            f"check the URL: is it a {what}? (a conda channel needs noarch/repodata.json)"
            if what == "conda channel"
            else "check the URL: a simple index looks like https://pypi.org/simple",
        )
    code = re.search(r"\((\d{3}) ([^)]*)\)", scan)
    if "refused" in low:
        reason = "connection refused"
    elif "timed out" in low or "timeout" in low:
        reason = "timed out"
    elif "dns error" in low or "failed to lookup" in low or "name or service" in low:
        reason = "host not found"
    elif code:
        reason = f"HTTP {code.group(1)} {code.group(2)}"
    else:
        lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
        reason = redact(lines[0] if lines else "unknown error")[:160]
    return Unavailable(
        f"cannot reach {what} {url}: {reason}",
        "check the URL, that the server is up, and your network or proxy settings",
    )


# --- PyPI (uv) --------------------------------------------------------------------------------


def uv_failure(stderr: str, spec: EnvSpec, provided: dict[str, str]) -> ImgbuildError:
    """uv pip compile's stderr as one of our errors. `provided`: name -> version from conda."""
    text = redact(_strip_ansi(stderr)).strip()
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if "Failed to fetch" in flat or "error sending request" in flat or "Could not connect" in flat:
        urls = _URL.findall(flat)
        url = strip_credentials(urls[0]) if urls else ", ".join(spec.indexes)
        index = next((i for i in spec.indexes + spec.find_links if url.startswith(i)), url)
        return _unavailable("package index", index, flat)
    m = re.search(r"Because (\S+?) was not found in the package registry", flat) or re.search(
        r"Because (?:there is no version of|only) (\S+?)(?:==| |[<>!~])", flat
    )
    if m and "depends on" not in flat.split("we can conclude")[0]:
        name = _req_name(m.group(1))
        origin = _origin(spec, name, "pypi")
        if "not found in the package registry" in flat:
            return NotFound(
                f"no package named {name}{origin} on {', '.join(spec.indexes)}",
                "check the spelling and the indexes (--index-url / --extra-index-url)",
            )
        detail = _first_sentence(flat)
        return NotFound(
            f"no version of {name}{origin} matches the request: {detail}",
            "relax the version constraint"
            + (f" or move --exclude-newer past {spec.exclude_newer}" if spec.exclude_newer else ""),
        )
    if "Because" in flat or "unsatisfiable" in flat:
        mixed = _mixed_conflict(flat, provided, spec)
        if mixed:
            return mixed
        return Conflict(
            f"PyPI requirements conflict for {spec.arch}: {_first_sentence(flat)}",
            "change or drop one of these requirements",
        )
    if "No solution found" in flat or "conflicting" in flat.lower():
        return Conflict(f"PyPI requirements conflict: {_first_sentence(flat)}")
    return BadInput(f"uv pip compile failed: {_first_sentence(flat)}", "rerun with --debug")


def _mixed_conflict(flat: str, provided: dict[str, str], spec: EnvSpec) -> ImgbuildError | None:
    """'conda provides six 1.16.0; imgb-conflict 1.0 (PyPI) needs six<1.0'."""
    dep_re = (
        r"(all versions of |only )?([A-Za-z0-9_.\-]+)(?:==([^\s,]+))? depends? on "
        r"([A-Za-z0-9_.\-]+)([^,\s]*)"
    )
    for m in re.finditer(dep_re, flat):
        every, pkg, ver, dep, constraint = m.groups()
        key, who = _req_name(dep), _req_name(pkg)
        if key in provided and who not in provided:
            where = ", ".join(x for x in ("PyPI", _where(spec, who, "pypi")) if x)
            which = f"{who} {ver} ({where})" if ver else f"{who} ({where})"
            which = f"every version of {which}" if every and not ver else which
            return Conflict(
                f"conda provides {key} {provided[key]}; {which} needs {key}{constraint}",
                f"pin a conda {key} that satisfies {constraint or 'it'}, or another version "
                f"of {who}",
            )
    for m in re.finditer(r"you require ([A-Za-z0-9_.\-]+)([^\s,]*)", flat):
        key = _req_name(m.group(1))
        if key in provided and any(_req_name(r) == key for r in spec.all_pypi):
            return Conflict(
                f"conda provides {key} {provided[key]}; the PyPI request{_origin(spec, key, 'pypi')} "
                f"asks for {key}{m.group(2)}",
                f"ask for {key} on one side only (conda already installs it)",
            )
    return None


def _req_name(text: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(re.split(r"[<>=!~\[ ;@]", text.strip("`'\""), maxsplit=1)[0])


def _first_sentence(flat: str) -> str:
    flat = re.sub(r"^(error|×)\s*:?\s*", "", flat)
    flat = re.sub(r"No solution found when resolving dependencies:?\s*(cause:)?\s*", "", flat)
    flat = re.sub(r"\s*(╰─▶|Caused by:|cause:)\s*", " ", flat)
    return flat[:400]


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
