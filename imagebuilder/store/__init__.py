"""Stores: `open_store(url)` gives a LocalStore for a path, an S3Store for s3://bucket/prefix."""

from __future__ import annotations

from imagebuilder.store.base import ObjectInfo, RaceLost, Store

__all__ = ["ObjectInfo", "RaceLost", "Store", "open_store"]


def open_store(url: str, config=None) -> Store:
    if url.startswith("s3://"):
        from imagebuilder.store.s3 import S3Store

        endpoint = config.get("s3_endpoint_url") if config is not None else None
        return S3Store(url, endpoint_url=endpoint)
    if "://" in url and not url.startswith("file://"):
        from imagebuilder.errors import BadInput

        raise BadInput(f"unsupported store URL {url!r}", "use a folder path or s3://bucket/prefix")
    from imagebuilder.store.local import LocalStore

    return LocalStore(url.removeprefix("file://"))
