"""docs/cli.md is what the code says, and every verb's help shows how to use it."""

from __future__ import annotations

import re
import subprocess
import sys

from interop_support import ROOT

MINE = ("export", "sbom", "config", "diff", "why")  # issue 9's verbs (others: their owners)


def test_cli_reference_is_up_to_date():
    p = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_cli.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, f"{p.stderr}{p.stdout}\nrun: python docs/gen_cli.py"


def test_help_of_these_verbs_has_examples():
    text = (ROOT / "docs" / "cli.md").read_text()
    blocks = {b.splitlines()[0]: b for b in re.split(r"\n#+ ", text)[1:]}
    for verb in MINE:
        block = blocks[f"imgbuild {verb}"] if verb != "config" else blocks["imgbuild config show"]
        assert "Example" in block, verb


def test_user_docs_link_the_other_docs():
    concepts = (ROOT / "docs" / "concepts.md").read_text()
    for doc in ("resolve.md", "store.md", "layering.md", "hydrate.md", "registry.md"):
        assert f"({doc})" in concepts, doc
    for doc in ("quickstart.md", "config.md", "lockfiles.md", "cli.md"):
        assert (ROOT / "docs" / doc).is_file(), doc
