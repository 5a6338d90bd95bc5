"""imgbuild: reproducible environments for Metaflow steps.

Three phases, kept apart: resolve (requirements -> pinned packages), cache (package files ->
content-addressed store) and materialize (store -> prefix, or store -> OCI layers).
"""

__version__ = "0.1.0"
