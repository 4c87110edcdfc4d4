"""Publish, pull by digest and verify against a real CNCF distribution registry.

The registry (Debian's docker-registry, distribution 2.8) runs on 127.0.0.1
with a throwaway CA, TLS and htpasswd (bcrypt) auth.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sovereign.model.cli import main

REGISTRY = Path("/usr/bin/docker-registry")
USER, PASSWORD = "publisher", "correct horse battery staple"

pytestmark = pytest.mark.skipif(
    not REGISTRY.exists(), reason="needs Debian's docker-registry: apt-get install docker-registry"
)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sovereign test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    return paths


def _htpasswd_line() -> str:
    tool = shutil.which("htpasswd")
    if tool:
        return subprocess.run(
            [tool, "-nbB", USER, PASSWORD], check=True, capture_output=True, text=True
        ).stdout.strip()
    bcrypt = pytest.importorskip("bcrypt", reason="needs htpasswd (apache2-utils) or bcrypt")
    hashed: bytes = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt())
    return f"{USER}:{hashed.decode()}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``(host:port, CA bundle)`` of a running TLS + htpasswd registry."""
    work = tmp_path_factory.mktemp("registry")
    ca, cert, key = _certificates(work)
    (work / "htpasswd").write_text(_htpasswd_line() + "\n")
    port = _free_port()
    (work / "config.yml").write_text(
        f"""version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: {work / "data"}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
  secret: throwaway-test-secret
  tls: {{certificate: {cert}, key: {key}}}
auth:
  htpasswd: {{realm: sovereign, path: {work / "htpasswd"}}}
"""
    )
    log = (work / "registry.log").open("w")
    process = subprocess.Popen(
        [str(REGISTRY), "serve", str(work / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with httpx.Client(verify=_context(ca)) as client:
                    if client.get(f"https://{address}/v2/").status_code == 401:
                        break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"registry did not start: {(work / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield address, ca
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    for name in ("SOVEREIGN_REGISTRY_USERNAME", "SOVEREIGN_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def _run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def signed_model(tmp_path: Path) -> tuple[Path, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = tmp_path / "model.key", tmp_path / "model.pub"
    private.write_bytes(_pem_key(key))
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    model = tmp_path / "tiny"
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 64}\n')
    (model / "tokenizer" / "tokenizer.json").write_text('{"vocab": {}}\n')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 12_288)  # 3 MiB
    return model, private, public


def test_publish_pull_verify_round_trip(
    registry: tuple[str, Path], signed_model: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    address, ca = registry
    model, private, public = signed_model
    auth = ["--username", USER, "--password-stdin", "--ca-bundle", str(ca)]
    code, out, err = _run(
        "publish",
        str(model),
        f"{address}/models/tiny:v1",
        "--key",
        str(private),
        "--name",
        "tiny",
        "--revision",
        "1",
        "--license",
        "Apache-2.0",
        "--chunk-size",
        "1",
        *auth,
        stdin=PASSWORD,
    )
    assert code == 0, err
    digest = out.strip()
    assert digest.startswith("sha256:")
    # Publishing again uploads nothing new and yields the same digest.
    assert _run(
        "publish", str(model), f"{address}/models/tiny:v1", "--key", str(private), *auth,
        "--name", "tiny", "--revision", "1", "--license", "Apache-2.0",
        stdin=PASSWORD,
    )[1].strip() == digest  # fmt: skip
    dest = tmp_path / "cache" / digest.replace(":", "-")
    code, out, err = _run(
        "pull", f"{address}/models/tiny@{digest}", str(dest), "--public-key", str(public), *auth,
        stdin=PASSWORD,
    )  # fmt: skip
    assert code == 0, err
    assert _run("verify", str(dest), "--public-key", str(public))[0] == 0
    assert (dest / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()


def test_unauthenticated_push_is_rejected(
    registry: tuple[str, Path], signed_model: tuple[Path, Path, Path]
) -> None:
    address, ca = registry
    model, private, _ = signed_model
    code, _, err = _run(
        "publish", str(model), f"{address}/models/anon:v1", "--key", str(private),
        "--ca-bundle", str(ca),
    )  # fmt: skip
    assert code == 1
    assert "requires authentication" in err


def test_wrong_password_is_rejected(
    registry: tuple[str, Path], signed_model: tuple[Path, Path, Path]
) -> None:
    address, ca = registry
    model, private, _ = signed_model
    code, _, err = _run(
        "publish", str(model), f"{address}/models/anon:v1", "--key", str(private),
        "--ca-bundle", str(ca), "--username", USER, "--password-stdin",
        stdin="wrong",
    )  # fmt: skip
    assert code == 1
    assert "rejected the credentials" in err
