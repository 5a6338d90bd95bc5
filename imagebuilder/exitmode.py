"""Whether this process leaves through `os._exit` (the CLI, the bootstrap, the Metaflow worker).

py-rattler can crash during interpreter finalization (LOCAL-SERVICES.md), so it runs in-process
only where finalization never happens; elsewhere (pytest, library callers) install/plan.py
starts a short-lived subprocess. A module of its own, with no imports, so the CLI can declare
it at start-up for nothing (importing install/plan.py there cost ~12 ms of `imgbuild resolve`).
"""

INPROCESS = False


def allow_inprocess(allowed: bool = True) -> None:
    """Declare that this process ends through os._exit, so py-rattler may run in it."""
    global INPROCESS
    INPROCESS = allowed
