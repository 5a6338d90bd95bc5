"""A container engine through docker-py at DOCKER_HOST (Docker, or Podman's compatible socket).

Traps handled (LOCAL-SERVICES.md): a Podman pull failure is not raised, it sits in the
progress stream (then a 404 later), so every stream event is checked; `exec_run` leaves conmon
processes behind, so commands run as the container's own process, never through exec.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from imagebuilder.cli.output import Ui
from imagebuilder.errors import BadInput, NotFound, Unavailable
from imagebuilder.urls import redact


def connect():
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or "the default Docker socket"
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as e:
        raise Unavailable(
            f"no container engine at {where} ({_short(e)})",
            "start Docker, or `podman system service` and set DOCKER_HOST=unix://<socket>",
        ) from None
    return client


def pull(client, ref: str, ui: Ui) -> str:
    """Pull `ref` (HOST/REPO:TAG or @digest); returns what the engine now calls it."""
    from docker.errors import APIError, ImageNotFound

    from imagebuilder.registry.credentials import find_credential
    from imagebuilder.registry.reference import parse_reference

    parsed = parse_reference(ref)
    auth = None
    cred = find_credential(parsed.registry).credential
    if cred is not None and not cred.identity_token:
        auth = {"username": cred.username, "password": cred.password}
    ui.info(f"pulling {ref}")
    name = f"{parsed.name}@{parsed.digest}" if parsed.digest else f"{parsed.name}:{parsed.ref}"
    try:
        for event in client.api.pull(name, stream=True, decode=True, auth_config=auth):
            err = event.get("error") or (event.get("errorDetail") or {}).get("message")
            if err:
                raise Unavailable(
                    f"the engine could not pull {name}: {redact(str(err))[:300]}",
                    "check the engine can reach the registry (insecure registries must be "
                    "configured in the engine too: registries.conf / daemon.json)",
                )
        client.images.get(name)
    except ImageNotFound:
        raise NotFound(f"image {name} is not in the engine after pulling it") from None
    except APIError as e:
        raise Unavailable(f"the engine could not pull {name}: {_short(e)}") from None
    return name


def load(client, tar: Path, ui: Ui) -> str:
    from docker.errors import APIError

    ui.info("loading the image into the engine")
    try:
        with open(tar, "rb") as f:
            images = client.images.load(f)
    except APIError as e:
        raise Unavailable(f"the engine could not load the image: {_short(e)}") from None
    if not images:
        raise Unavailable("the engine loaded nothing from the image archive")
    return images[0].id


def run(client, image: str, command: list[str], cwd: Path, workdir: str, ui: Ui) -> int:
    """Run `command` in a new container, stream its output, remove it; return its exit code."""
    from docker.errors import APIError, ImageNotFound

    if not workdir.startswith("/"):
        raise BadInput(f"--workdir {workdir!r} must be an absolute path in the container")
    try:
        container = client.containers.create(
            image,
            command=command,
            working_dir=workdir,
            volumes={str(cwd): {"bind": workdir, "mode": "rw"}},
            detach=True,
        )
    except ImageNotFound:
        raise NotFound(f"image {image} not found in the engine") from None
    except APIError as e:
        raise Unavailable(f"the engine could not create the container: {_short(e)}") from None
    try:
        stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
        container.start()
        for out, err in stream:
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.flush()
        return int(container.wait().get("StatusCode", 1))
    except APIError as e:
        raise Unavailable(f"running {command[0]} failed in the engine: {_short(e)}") from None
    finally:
        try:
            container.remove(force=True)
        except APIError:
            ui.warn(f"could not remove container {container.short_id}")


def _short(e: Exception) -> str:
    text = getattr(e, "explanation", None) or str(e)
    return redact(str(text).splitlines()[0][:300]) if text else type(e).__name__
