#!/usr/bin/env python3
"""Make a throw-away CA and a server certificate for 127.0.0.1 / localhost (openssl CLI).

    python ci/pypi/tls.py DIR      -> DIR/ca.pem, DIR/server.pem, DIR/server.key

Clients trust ``ca.pem``: uv and pip 26 with ``SSL_CERT_FILE=DIR/ca.pem`` (pip 26 verifies
through truststore; its ``--cert`` did not work here), Python with
``ssl.create_default_context(cafile=...)``. A self-signed leaf does not do: rustls (uv) refuses
a CA certificate used as the server's own certificate ("CaUsedAsEndEntity").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def make_tls(out: str | Path, days: int = 7) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        out / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ext = out / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=120)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days), "-subj", "/CN=imgbuild test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days",
        str(days), "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return {"ca": ca, "cert": cert, "key": key}


if __name__ == "__main__":
    paths = make_tls(sys.argv[1] if len(sys.argv) > 1 else ".")
    for k, v in paths.items():
        print(f"{k}={v}")
