"""docker-registry variants for auth tests: plain, htpasswd (Basic) and `auth: token` (Bearer)
with a small token server, all on 127.0.0.1.

The token server implements the Docker token protocol the way Docker Hub / Harbor do:
`GET /token?service=S&scope=repository:R:pull,push` with Basic credentials answers
`{"token": JWT, "expires_in": 300}`. JWTs are RS256, signed by a key whose self-signed
certificate docker-registry trusts (`rootcertbundle`), and carry the key's certificate in
`x5c` (distribution 2.8 verifies the chain against that bundle).

Users: {name: (password, actions)}; anonymous requests get `pull` only when allowed.

Standalone: `python ci/services/registry_token.py up --dir DIR` starts a token registry and its
token server, prints their addresses and writes DIR/registry_token.env; Ctrl-C stops both.
In the rig: `TokenAuth` plugs into ci/services/registry.py's `Registry` (see its doc).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ISSUER = "imgbuild-test-issuer"
SERVICE = "imgbuild-test-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    key: object
    cert_pem: bytes
    cert_der: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(
            key,
            cert.public_bytes(serialization.Encoding.PEM),
            cert.public_bytes(serialization.Encoding.DER),
        )

    def save(self, folder: Path) -> None:
        from cryptography.hazmat.primitives import serialization

        folder.mkdir(parents=True, exist_ok=True)
        key = self.key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (folder / "token-key.pem").write_bytes(key)
        (folder / "token-key.pem").chmod(0o600)
        (folder / "token-root.pem").write_bytes(self.cert_pem)

    @classmethod
    def load(cls, folder: Path) -> SigningKey:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key((folder / "token-key.pem").read_bytes(), None)
        cert_pem = (folder / "token-root.pem").read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        return cls(key, cert_pem, cert.public_bytes(serialization.Encoding.DER))

    def jwt(self, claims: dict) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)


@dataclass
class TokenServer:
    """A Docker token service in a background thread."""

    users: dict[str, tuple[str, tuple[str, ...]]]
    anonymous_pull: bool = False
    key: SigningKey = field(default_factory=SigningKey.generate)
    requests: list[dict] = field(default_factory=list)  # (user, scopes, granted) per request
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> TokenServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                owner._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        if url.path != "/token":
            return _reply(h, 404, {"error": "not found"})
        q = parse_qs(url.query)
        user, allowed = None, ("pull",) if self.anonymous_pull else ()
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            entry = self.users.get(name)
            if entry is None or not secrets.compare_digest(entry[0], password):
                self.requests.append({"user": name, "scopes": q.get("scope", []), "ok": False})
                return _reply(h, 401, {"details": "bad credentials"})
            user, allowed = name, entry[1]
        access = []
        for scope in q.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a in allowed]
            access.append({"type": kind, "name": name, "actions": granted})
        self.requests.append({"user": user, "scopes": q.get("scope", []), "ok": True})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": q.get("service", [SERVICE])[0],
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = self.key.jwt(claims)
        _reply(h, 200, {"token": token, "access_token": token, "expires_in": 300})


def _reply(h: BaseHTTPRequestHandler, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


@dataclass
class Registry:
    """A docker-registry process (see LOCAL-SERVICES.md) with an optional auth section."""

    root: Path
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_registry(root: Path, auth_yaml: str = "", port: int | None = None) -> Registry:
    exe = shutil.which("docker-registry")
    if not exe:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: info, accesslog: {disabled: false}}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n" + auth_yaml
    )
    log = root / "registry.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [exe, "serve", str(config)],
            preexec_fn=_die_with_parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    reg = Registry(root, port, proc, log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{reg.host}/v2/", timeout=1)
            return reg
        except urllib.error.HTTPError:
            return reg  # 401 with auth: it is up
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError("docker-registry did not start in 15 s")


def _die_with_parent() -> None:
    """A test's registry must not outlive a killed pytest (PR_SET_PDEATHSIG = SIGTERM)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def htpasswd_auth(root: Path, users: dict[str, str]) -> str:
    """The auth section for Basic auth; the htpasswd file is written with bcrypt."""
    path = root / "htpasswd"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    for user, password in users.items():
        subprocess.run(
            ["htpasswd", "-bB", str(path), user, password], check=True, capture_output=True
        )
    return f"auth: {{htpasswd: {{realm: imgbuild-test, path: {path}}}}}\n"


def token_auth(root: Path, server: TokenServer) -> str:
    """The auth section for Bearer tokens issued by `server` (its cert is the trust root)."""
    root.mkdir(parents=True, exist_ok=True)
    bundle = root / "token-root.pem"
    bundle.write_bytes(server.key.cert_pem)
    return (
        "auth:\n  token:\n"
        f"    realm: {server.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        f"    rootcertbundle: {bundle}\n"
    )


def start_token_registry(
    root: Path, users: dict[str, tuple[str, tuple[str, ...]]], anonymous_pull: bool = False
) -> tuple[Registry, TokenServer]:
    server = TokenServer(users, anonymous_pull).start()
    try:
        return start_registry(root, token_auth(root, server)), server
    except Exception:
        server.stop()
        raise


class TokenAuth:
    """The rig's `auth: token` variant (ci/services/registry.py's Auth protocol): a token
    server process of the registry's service, and the registry trusting its certificate.

    In ci/rig.py: `Registry("registry_token", "IMGBUILD_RIG_REGISTRY_TOKEN",
    TokenAuth("IMGBUILD_RIG_REGISTRY_TOKEN"))`; keys: <prefix>_USER, <prefix>_PASSWORD,
    <prefix>_REALM."""

    def __init__(self, env_prefix: str, user: str = "imgbuild"):
        self.env_prefix = env_prefix
        self.user = user

    def prepare(self, rig, service: str, folder: Path) -> tuple[dict, dict[str, str]]:
        import sys

        password = rig.secret(f"{service}.password")
        key_dir = folder / "token"
        if not (key_dir / "token-key.pem").exists():
            SigningKey.generate().save(key_dir)
        port = rig.port(service, "token_port")
        env = {**os.environ, "IMGBUILD_TOKEN_PASSWORD": password}
        rig.spawn(
            service,
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "serve-token",
                "--dir",
                str(key_dir),
                "--port",
                str(port),
                "--user",
                self.user,
            ],
            env=env,
            log=f"{service}-token",
        )
        realm = f"http://127.0.0.1:{port}/token"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(realm, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401: up
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"token server {realm} did not start") from None
                time.sleep(0.05)
        rig.update(service, token_port=port)
        section = {
            "token": {
                "realm": realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(key_dir / "token-root.pem"),
            }
        }
        return section, {
            f"{self.env_prefix}_USER": self.user,
            f"{self.env_prefix}_PASSWORD": password,
            f"{self.env_prefix}_REALM": realm,
        }


def serve_token(folder: Path, port: int, user: str, password: str) -> None:
    """Run a token server in the foreground with a saved key (the rig's process)."""
    server = TokenServer(
        {user: (password, ("pull", "push"))},
        anonymous_pull=True,
        key=SigningKey.load(folder),
        port=port,
    ).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["up", "serve-token"])
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--user", default="imgb")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    password = os.environ.get("IMGBUILD_TOKEN_PASSWORD", "imgb-pass")  # never on argv
    if args.cmd == "serve-token":
        serve_token(args.dir, args.port, args.user, password)
        return 0
    reg, server = start_token_registry(
        args.dir, {args.user: (password, ("pull", "push"))}, anonymous_pull=True
    )
    env = args.dir / "registry_token.env"
    env.write_text(
        f"IMGBUILD_RIG_TOKEN_REGISTRY={reg.host}\nIMGBUILD_RIG_TOKEN_REALM={server.realm}\n"
        f"IMGBUILD_RIG_TOKEN_USER={args.user}\n"
    )
    print(f"token registry {reg.host}, token server {server.realm}; env in {env}", flush=True)
    try:
        while reg.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        reg.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
