"""Talking to OCI registries: references, credentials, auth, blobs, manifests, remote bases."""
