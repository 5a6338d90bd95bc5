"""Artifacts with `subject` (the SBOM path of issue 9): push, then find through the referrers
API or the tag-schema fallback (docker-registry 2.8 has no referrers API)."""

from __future__ import annotations

import json
import shutil
import subprocess

from regkit import tiny_image

from imagebuilder.oci.registry import registry_sink
from imagebuilder.registry.artifacts import (
    Subject,
    fallback_tag,
    fetch_artifact_file,
    push_artifact,
    referrers,
)
from imagebuilder.registry.client import RegistryClient

CDX = "application/vnd.cyclonedx+json"


def test_push_and_discover(proxy):
    img = tiny_image("sbom-subject")
    registry_sink(f"{proxy.host}/envs/sbom", insecure=True).write(img, ["abc"])
    c = RegistryClient(proxy.host, insecure=True)
    subject = Subject(img.media_type, img.digest, len(img.manifest))
    sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}).encode()
    desc = push_artifact(c, "envs/sbom", subject, CDX, [(CDX, sbom)], {"dev.imgbuild.kind": "sbom"})
    # Pushing again is idempotent: one entry.
    push_artifact(c, "envs/sbom", subject, CDX, [(CDX, sbom)], {"dev.imgbuild.kind": "sbom"})
    found = referrers(c, "envs/sbom", img.digest, CDX)
    assert [d["digest"] for d in found] == [desc["digest"]]
    assert referrers(c, "envs/sbom", img.digest, "application/other") == []
    assert fetch_artifact_file(c, "envs/sbom", found[0]) == sbom
    man = c.get_manifest("envs/sbom", desc["digest"]).json()
    assert man["subject"]["digest"] == img.digest and man["artifactType"] == CDX
    assert fallback_tag(img.digest) in c.list_tags("envs/sbom")


def test_skopeo_reads_the_artifact_manifest(registry):
    if not shutil.which("skopeo"):
        raise AssertionError("skopeo is required (apt-get install skopeo)")
    img = tiny_image("sbom-skopeo")
    registry_sink(f"{registry.host}/envs/sbom2", insecure=True).write(img, ["x"])
    c = RegistryClient(registry.host, insecure=True)
    subject = Subject(img.media_type, img.digest, len(img.manifest))
    push_artifact(c, "envs/sbom2", subject, CDX, [(CDX, b"{}")])
    out = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry.host}/envs/sbom2:{fallback_tag(img.digest)}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["manifests"][0]["artifactType"] == CDX


def test_repush_writes_nothing(proxy):
    img = tiny_image("sbom-repush")
    registry_sink(f"{proxy.host}/envs/sbom3", insecure=True).write(img, ["x"])
    c = RegistryClient(proxy.host, insecure=True)
    subject = Subject(img.media_type, img.digest, len(img.manifest))
    push_artifact(c, "envs/sbom3", subject, CDX, [(CDX, b'{"a":1}')])
    proxy.seen.clear()
    push_artifact(c, "envs/sbom3", subject, CDX, [(CDX, b'{"a":1}')])
    assert proxy.count("PUT") == 0 and proxy.count("POST") == 0
