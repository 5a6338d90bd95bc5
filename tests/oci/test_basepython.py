"""Finding the base image's python for venv images (--python-from-base): layer names only,
whiteouts applied, symlinked folders followed; a clear error when it is not there."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from imagebuilder.errors import BadInput
from imagebuilder.oci.base import Base
from imagebuilder.oci.basepython import find_python, venv_entries
from imagebuilder.oci.image import BytesBlob, Descriptor, Layer, Platform


def layer(*members: tuple[str, str | None]) -> Layer:
    """A plain-tar layer: (name, None) is a file, (name, target) a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, target in members:
            info = tarfile.TarInfo(name)
            if target is not None:
                info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info, io.BytesIO(b""))
    data = buf.getvalue()
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + "0" * 64, len(data))
    return Layer(desc, desc.digest, BytesBlob(data), "base")


def base(*layers: Layer) -> Base:
    # a digest per content: found pythons are remembered per base digest
    digest = hashlib.sha256(b"".join(x.source.data for x in layers)).hexdigest()
    return Base("test-base", f"sha256:{digest}", {}, tuple(layers), Platform("linux", "amd64"))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class CountingBlob(BytesBlob):
    opened = 0

    def open(self):
        CountingBlob.opened += 1
        return super().open()


def test_found_python_is_remembered_per_base_digest(cache_dir):
    plain = layer(("usr/bin/python3.11", None))
    counted = Layer(plain.descriptor, plain.diff_id, CountingBlob(plain.source.data), "base")
    b = base(counted)
    assert find_python(b, "3.11") == "/usr/bin/python3.11"
    with pytest.raises(BadInput):
        find_python(b, "3.12")
    opened = CountingBlob.opened
    assert opened == 2
    assert find_python(b, "3.11") == "/usr/bin/python3.11"
    with pytest.raises(BadInput):
        find_python(b, "3.12")
    assert CountingBlob.opened == opened  # both answers came from the cache
    assert len(list((cache_dir / "base-python").iterdir())) == 2


def test_prefers_usr_local_then_usr():
    b = base(layer(("./usr/bin/python3.11", None)), layer(("usr/local/bin/python3.11", None)))
    assert find_python(b, "3.11") == "/usr/local/bin/python3.11"
    assert find_python(base(layer(("usr/bin/python3.11", None))), "3.11") == "/usr/bin/python3.11"


def test_whiteouts_remove_lower_layers_files():
    lower = layer(("usr/local/bin/python3.12", None), ("usr/bin/python3.12", None))
    b = base(lower, layer(("usr/local/bin/.wh.python3.12", None)))
    assert find_python(b, "3.12") == "/usr/bin/python3.12"
    gone = base(lower, layer(("usr/local/.wh.bin", None)), layer(("usr/bin/.wh..wh..opq", None)))
    with pytest.raises(BadInput, match="has no python3.12"):
        find_python(gone, "3.12")


def test_symlinked_folders_are_followed():
    b = base(layer(("opt/py/bin/python3.12", None), ("usr/local", "../opt/py")))
    assert find_python(b, "3.12") == "/usr/local/bin/python3.12"
    loop = base(layer(("usr/local", "local2"), ("usr/local2", "local")))
    with pytest.raises(BadInput):
        find_python(loop, "3.12")


def test_scratch_and_wrong_version_are_clear():
    with pytest.raises(BadInput) as e:
        find_python(base(layer(("usr/bin/python3.11", None))), "3.12")
    assert "python:3.12-slim" in e.value.hint and "/usr/local/bin/python3.12" in e.value.message
    scratch = Base("scratch", None, {}, (), Platform("linux", "amd64"))
    with pytest.raises(BadInput, match="base scratch has no python3.11"):
        find_python(scratch, "3.11")


def test_venv_entries_point_at_the_base_python():
    es = {e.path: e for e in venv_entries("/opt/imgbuild/env", "/usr/bin/python3.11", "3.11")}
    cfg = es["opt/imgbuild/env/pyvenv.cfg"].data.decode()
    assert "home = /usr/bin\n" in cfg and "include-system-site-packages = false" in cfg
    assert es["opt/imgbuild/env/bin/python"].target == "/usr/bin/python3.11"
    assert es["opt/imgbuild/env/bin/python3.11"].target == "python"
