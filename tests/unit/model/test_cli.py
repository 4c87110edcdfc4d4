from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sovereign.model.cli import main
from tests.unit.model.fakeregistry import FakeRegistry


def run(*argv: str, registry: FakeRegistry | None = None, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        list(argv),
        transport=registry.transport() if registry else None,
        stdout=out,
        stderr=err,
        stdin=io.StringIO(stdin),
    )
    return code, out.getvalue(), err.getvalue()


def test_digest_prints_the_manifest(model_dir: Path) -> None:
    code, out, err = run("digest", str(model_dir))
    assert code == 0 and err == ""
    assert [f["path"] for f in json.loads(out)["files"]][-1] == "weights.safetensors"
    assert run("digest", str(model_dir))[1] == out


def test_sign_verify_and_exit_codes(
    model_dir: Path, key_pair: tuple[Path, Path], other_key_pair: tuple[Path, Path]
) -> None:
    private, public = key_pair
    assert run("verify", str(model_dir), "--public-key", str(public))[0] == 4  # unsigned
    assert run("sign", str(model_dir), "--key", str(private))[0] == 0
    code, out, _ = run("verify", str(model_dir), "--public-key", str(public))
    assert code == 0 and out.startswith("OK:")
    assert run("verify", str(model_dir), "--public-key", str(other_key_pair[1]))[0] == 3
    (model_dir / "config.json").write_text("{}")
    (model_dir / "new.bin").write_text("x")
    code, _, err = run("verify", str(model_dir), "--public-key", str(public))
    assert code == 5
    assert "changed: config.json" in err and "extra: new.bin" in err
    assert "Traceback" not in err


def test_verify_against_a_digest_manifest(
    model_dir: Path, key_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    pin = tmp_path / "pin.json"
    assert run("digest", str(model_dir), "--output", str(pin))[0] == 0
    assert run("sign", str(model_dir), "--key", str(key_pair[0]))[0] == 0
    argv = ["verify", str(model_dir), "--public-key", str(key_pair[1]), "--digest-manifest"]
    assert run(*argv, str(pin))[0] == 0
    assert run("verify", str(model_dir), "--digest-manifest", str(pin))[0] == 0
    document = json.loads(pin.read_text())
    document["files"][0]["sha256"] = "0" * 64
    pin.write_text(json.dumps(document))
    code, _, err = run(*argv, str(pin))
    assert code == 5 and "changed: .gitattributes" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: command"),
        (["frobnicate"], "invalid choice"),
        (["sign", "DIR"], "--key"),
        (["verify", "DIR"], "needs --public-key, --digest-manifest"),
        (["pull", "registry.test/m:v1", "dest", "--public-key", "k"], "digest-pinned"),
        (["pull", "registry.test/m@sha256:" + "a" * 64, "dest"], "--insecure-skip-signature"),
        (["pull", "no-registry@sha256:" + "a" * 64, "dest", "--public-key", "k"], "REGISTRY/"),
        (["publish", "DIR", "registry.test/m@sha256:" + "a" * 64, "--key", "k"], "computed"),
        (["publish", "DIR", "registry.test/m", "--key", "k", "--public-key", "p"], "not allowed"),
        (["publish", "DIR", "registry.test/m"], "--key --public-key"),
        (["digest", "/nonexistent/model"], "No such file"),
        (["sign", "{model}", "--key", "/nonexistent/key.pem"], "cannot read private key"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(
    argv: list[str], message: str, model_dir: Path
) -> None:
    code, out, err = run(*[a.replace("{model}", str(model_dir)) for a in argv])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err and err.startswith("sovereign model: error:")


def test_publish_then_pull_through_the_cli(
    model_dir: Path, key_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    registry = FakeRegistry(username="alice", password="pw")
    base = ["--username", "alice", "--password-stdin"]
    code, out, err = run(
        "publish",
        str(model_dir),
        "registry.test:5000/models/tiny:v1",
        "--key",
        str(key_pair[0]),
        "--name",
        "tiny",
        "--revision",
        "r1",
        "--license",
        "Apache-2.0",
        *base,
        registry=registry,
        stdin="pw\n",
    )
    assert code == 0, err
    digest = out.strip()
    manifest = json.loads(registry.manifests[digest])
    assert manifest["artifactType"] == "application/vnd.sovereign.model.v1"
    assert manifest["annotations"]["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert {
        layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]
    } >= {
        "weights.safetensors",
        "model.sig",
    }
    dest = tmp_path / "pulled"
    ref = f"registry.test:5000/models/tiny@{digest}"
    argv = ["pull", ref, str(dest), "--public-key", str(key_pair[1]), *base]
    code, out, err = run(*argv, registry=registry, stdin="pw\n")
    assert code == 0, err
    assert out.strip() == str(dest)
    assert run("verify", str(dest), "--public-key", str(key_pair[1]))[0] == 0
    anonymous = ["pull", ref, str(tmp_path / "again"), "--public-key", str(key_pair[1])]
    code, _, err = run(*anonymous, registry=registry)
    assert code == 1 and "requires authentication" in err


def test_dry_run_prints_the_digest_a_push_will_have_and_contacts_no_registry(
    model_dir: Path, key_pair: tuple[Path, Path]
) -> None:
    private, public = key_pair
    assert run("sign", str(model_dir), "--key", str(private))[0] == 0
    target = "registry.test:5000/models/tiny"
    labels = ["--name", "tiny", "--revision", "r1"]
    code, planned, err = run(
        "publish", str(model_dir), target, "--public-key", str(public), "--dry-run", *labels
    )
    assert code == 0, err
    registry = FakeRegistry()
    code, pushed, err = run(
        "publish", str(model_dir), target, "--public-key", str(public), *labels, registry=registry
    )
    assert code == 0, err
    assert planned == pushed and planned.strip() in registry.manifests
    # Another revision annotation is another artifact.
    code, other, _ = run(
        "publish",
        str(model_dir),
        target,
        "--public-key",
        str(public),
        "--dry-run",
        "--revision",
        "r2",
    )
    assert code == 0 and other != planned


def test_publish_with_a_public_key_needs_the_custodians_signature(
    model_dir: Path, key_pair: tuple[Path, Path], other_key_pair: tuple[Path, Path]
) -> None:
    target = "registry.test:5000/models/tiny"
    registry = FakeRegistry()
    argv = ["publish", str(model_dir), target, "--public-key", str(key_pair[1])]
    code, _, err = run(*argv, registry=registry)
    assert code == 4 and "has no model.sig" in err
    assert not (model_dir / "model.sig").exists() and registry.manifests == {}
    assert run("sign", str(model_dir), "--key", str(other_key_pair[0]))[0] == 0
    code, _, err = run(*argv, registry=registry)
    assert code == 3 and registry.manifests == {}
    assert run("sign", str(model_dir), "--key", str(key_pair[0]))[0] == 0
    (model_dir / "config.json").write_text("{}")
    code, _, err = run(*argv, registry=registry)
    assert code == 5 and "changed: config.json" in err and registry.manifests == {}
