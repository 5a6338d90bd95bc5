"""Registers `metaflow environment ...` (imagebuilder/metaflow/cmd.py)."""

CMDS_DESC = [("environment", "imagebuilder.metaflow.cmd.cli")]
