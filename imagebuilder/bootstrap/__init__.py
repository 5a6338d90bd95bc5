"""Task-start bootstrap: `python -m imagebuilder.bootstrap ENV PREFIX`.

Runs in a generic image that has only Python and pip, from the `imagebuilder` source shipped in
the Metaflow code package (without its dependencies). Everything imported before the runtime
is loaded is standard library: this package, the core records (env, ids, spec, errors), the
store's local folder reader and the stdlib S3 reader (bootstrap/s3.py). The runtime wheels
(zstandard to unpack a pack; py-rattler and installer to install per package) come from the
store itself (bootstrap/runtime.py), never from PyPI. Then it locks the prefix, fetches in
parallel, creates the env (from its pack when the store has one: one download, see
docs/hydrate.md for the figures) and prints the env's interpreter as the last stdout line.
"""
