"""Three steps, three environments: a mixed conda + PyPI env (start), a PyPI one (mid), and a
named one made beforehand with `imgbuild resolve --alias` (end). Each step checks its own
packages and versions, and that the other steps' packages are absent."""

import os
import shutil
import subprocess
import sys

from metaflow import FlowSpec, conda, named_env, pypi, step

ALIAS = os.environ.get("IMGB_MF_ALIAS", "mf-test/tools:v1")


def absent(*modules):
    import importlib.util

    for m in modules:
        assert importlib.util.find_spec(m) is None, f"{m} should not be here ({sys.executable})"


class ThreeStepFlow(FlowSpec):
    @conda(libraries={"tinyfoo": "1.1", "imgb-cli": ""})
    @pypi(packages={"imgb-hello": "1.1"})
    @step
    def start(self):
        import imgb_hello
        import tinyfoo

        assert tinyfoo.__version__ == "1.1", tinyfoo.__version__
        assert imgb_hello.__version__ == "1.1", imgb_hello.__version__
        cli = shutil.which("imgb-cli")
        assert cli and os.path.dirname(cli) == os.path.dirname(sys.executable), cli
        subprocess.run([cli], check=True)
        absent("attrs", "packaging")
        self.python = sys.executable
        print("start ok", sys.executable)
        self.next(self.mid)

    @pypi(packages={"imgb-hello": "2.0", "attrs": ""})
    @step
    def mid(self):
        import attrs
        import imgb_hello

        assert imgb_hello.__version__ == "2.0", imgb_hello.__version__
        assert attrs.__version__ == "23.1.0", attrs.__version__
        absent("tinyfoo", "packaging")
        assert sys.executable != self.python
        print("mid ok", sys.executable)
        self.next(self.end)

    @named_env(name=ALIAS)
    @step
    def end(self):
        import packaging

        assert packaging.__version__ == "23.2", packaging.__version__
        absent("tinyfoo", "imgb_hello", "attrs")
        print("end ok", sys.executable)


if __name__ == "__main__":
    ThreeStepFlow()
