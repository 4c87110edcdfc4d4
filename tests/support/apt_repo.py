"""A signed flat APT repository of dummy packages, built on the controller.

The gpu_driver scenario's mirror of NVIDIA's CUDA repository: packages
named and versioned like NVIDIA's (several driver versions per branch,
several fabric manager versions), each an empty ``.deb`` with its
dependencies and, where the role manages a service, a systemd unit that
stands in for the daemon. Built with dpkg-deb and dpkg-scanpackages,
signed with a throwaway GnuPG key (``InRelease`` and ``Release.gpg``) so
that the role's ``signed-by`` is exercised for real:

    python -m tests.support.apt_repo SPEC.yml OUT_DIR

writes ``OUT_DIR/repo/`` (serve it as the repository URL, suite ``/``),
the same as ``OUT_DIR/repo.tar``, and ``OUT_DIR/key.asc`` (the key the
inventory passes to the role).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    depends: str = ""
    # path inside the package -> (content, mode)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    description: str = "Sovereign test stand-in"


def build_deb(package: Package, out_dir: Path) -> Path:
    """One binary package, architecture all."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        control = [
            f"Package: {package.name}",
            f"Version: {package.version}",
            "Architecture: all",
            "Maintainer: Sovereign tests <tests@sovereign.invalid>",
            "Section: misc",
            "Priority: optional",
        ]
        if package.depends:
            control.append(f"Depends: {package.depends}")
        control.append(f"Description: {package.description}")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n", encoding="utf-8")
        for path, (content, mode) in package.files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            target.chmod(mode)
        # dpkg-deb wants 0755 directories whatever the umask.
        for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
            directory.chmod(0o755)
        version = package.version.split(":")[-1]
        deb = out_dir / f"{package.name}_{version}_all.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
            check=True,
            capture_output=True,
        )
    return deb


def _release(repo: Path) -> str:
    lines = [
        "Origin: Sovereign test mirror",
        "Label: sovereign-test",
        "Architectures: all amd64",
        "Date: Thu, 01 Jan 2026 00:00:00 UTC",
    ]
    for algorithm, title in (("md5", "MD5Sum"), ("sha256", "SHA256")):
        lines.append(f"{title}:")
        for name in ("Packages", "Packages.gz"):
            data = (repo / name).read_bytes()
            lines.append(f" {hashlib.new(algorithm, data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


def build_repo(packages: list[Package], out: Path) -> Path:
    """Build and sign the repository; return the armored public key's path."""
    repo = out / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    for package in packages:
        build_deb(package, repo)
    scanned = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "."], cwd=repo, check=True, capture_output=True
    ).stdout
    (repo / "Packages").write_bytes(scanned)
    (repo / "Packages.gz").write_bytes(gzip.compress(scanned, mtime=0))
    (repo / "Release").write_text(_release(repo), encoding="utf-8")
    home = out / "gnupg"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [
            *gpg,
            "--quick-generate-key",
            "Sovereign test mirror <mirror@sovereign.invalid>",
            "ed25519",
            "sign",
            "2d",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    release = repo / "Release"
    subprocess.run(
        [*gpg, "--yes", "--clearsign", "-o", str(repo / "InRelease"), str(release)],
        env=env,
        check=True,
    )
    subprocess.run(
        [*gpg, "--yes", "-abs", "-o", str(repo / "Release.gpg"), str(release)], env=env, check=True
    )
    key = out / "key.asc"
    exported = subprocess.run(
        [*gpg, "--armor", "--export"], env=env, check=True, capture_output=True
    ).stdout
    key.write_bytes(exported)
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True)
    # One file to copy to a node (a copy per package is slow over docker exec).
    with tarfile.open(out / "repo.tar", "w") as archive:
        archive.add(repo, arcname=".")
    return key


def load_spec(path: Path) -> list[Package]:
    """A YAML list of {name, versions, depends, files}; ``{version}`` in a
    name, a dependency or a file is that package's version, ``{upstream}``
    the version without epoch and revision."""
    packages = []
    for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
        for version in entry["versions"]:
            upstream = version.split(":")[-1].rsplit("-", 1)[0]
            files = {
                name: (
                    str(spec["content"]).replace("{version}", version),
                    int(str(spec.get("mode", "0644")), 8),
                )
                for name, spec in (entry.get("files") or {}).items()
            }
            packages.append(
                Package(
                    name=entry["name"]
                    .replace("{version}", version)
                    .replace("{upstream}", upstream),
                    version=version,
                    depends=str(entry.get("depends", "")).replace("{version}", version),
                    files=files,
                )
            )
    return packages


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.support.apt_repo SPEC.yml OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    key = build_repo(load_spec(Path(argv[0])), out)
    print(f"repository {out / 'repo'}, key {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
