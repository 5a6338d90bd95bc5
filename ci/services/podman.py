"""podman with a Docker-compatible socket, configured to work on these machines.

runc (crun fails on hybrid cgroups), cgroupfs, vfs storage in DIR/podman, fixed ulimits
(default rlimits fail without CAP_SYS_RESOURCE), no network namespace, events to a file, and
every rig registry marked insecure (plain HTTP). Clients use DOCKER_HOST / docker-py with
IMGBUILD_RIG_PODMAN_SOCKET and, for the `podman` CLI, the three CONTAINERS_* variables.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from services.base import Rig, RigError

NAME = "podman"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(rig: Rig, registries: list[str]) -> dict[str, str]:
    folder = rig.dir / "podman"
    for sub in ("graph", "run", "tmp", "volumes"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    containers = folder / "containers.conf"
    containers.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        'netns = "none"\n'
        'log_driver = "k8s-file"\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f"events_logfile_path = {_toml_str(str(folder / 'events.log'))}\n"
        f"tmp_dir = {_toml_str(str(folder / 'tmp'))}\n"
        f"volume_path = {_toml_str(str(folder / 'volumes'))}\n"
    )
    storage = folder / "storage.conf"
    storage.write_text(
        "[storage]\n"
        'driver = "vfs"\n'
        f"graphroot = {_toml_str(str(folder / 'graph'))}\n"
        f"runroot = {_toml_str(str(folder / 'run'))}\n"
    )
    regs = folder / "registries.conf"
    regs.write_text(
        'unqualified-search-registries = []\nshort-name-mode = "permissive"\n'
        + "".join(f'\n[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in registries)
    )
    return {
        "CONTAINERS_CONF": str(containers),
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_REGISTRIES_CONF": str(regs),
    }


def _ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b" 200 " in s.recv(200)
    except OSError:
        return False


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONTAINERS_", "DOCKER_", "REGISTRY_AUTH_FILE", "BUILDAH_"))
    }


def up(rig: Rig, registries: list[str]) -> dict[str, str]:
    exe = shutil.which("podman")
    if not exe:
        raise RigError("podman not found (apt-get install podman runc; see ci/install.sh)")
    sock = rig.dir / "podman.sock"
    if len(str(sock)) > 100:
        raise RigError(f"rig folder path too long for a unix socket: {sock}")
    st = rig.service(NAME)
    conf = write_config(rig, registries)
    same = st.get("registries") == registries
    if rig.alive(NAME) and st.get("env") and same and _ping(sock):
        return st["env"]
    down(rig)
    sock.unlink(missing_ok=True)
    env = clean_env() | conf
    rig.spawn(NAME, [exe, "system", "service", "--time=0", f"unix://{sock}"], env=env)
    rig.wait_for(NAME, lambda: _ping(sock), f"podman socket {sock}", timeout=30)
    out = conf | {"IMGBUILD_RIG_PODMAN_SOCKET": f"unix://{sock}"}
    rig.update(NAME, env=out, registries=registries)
    return out


def down(rig: Rig) -> list[int]:
    """Remove containers (so no container outlives its conmon), then stop the service."""
    st = rig.service(NAME)
    if st.get("env") and shutil.which("podman") and (rig.dir / "podman" / "graph").is_dir():
        env = clean_env() | {k: v for k, v in st["env"].items() if k.startswith("CONTAINERS_")}
        subprocess.run(
            ["podman", "rm", "--all", "--force", "--time", "0"],
            env=env,
            capture_output=True,
            timeout=60,
        )
    return rig.stop(NAME)
