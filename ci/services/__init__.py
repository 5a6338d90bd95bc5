"""Services of the local test rig (see ci/rig.py).

Each module holds one concern: `base` (the rig folder, its state, processes and ports),
`registry`, `s3`, `podman`, `static` (conda channel and PyPI index), `debimage` (base images
from Debian packages) and `ocilayout` (a tiny OCI image-layout writer). Nothing here imports
the product package `imagebuilder`: the rig must not depend on the code it tests.
"""
