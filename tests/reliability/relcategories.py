"""The reliability suite's categories, in table order: recorded by conftest.py's `record`,
reported by bench/faults.py (which imports this file by path: a category with no case fails)."""

CATEGORIES = (
    "hostile archives",
    "crash points",
    "concurrency runs",
    "fault-proxy scenarios",
    "bad inputs",
    "secret checks",
)
