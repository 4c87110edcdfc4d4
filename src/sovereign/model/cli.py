"""``sovereign model``: digest, sign, verify, publish and pull model artifacts.

Exit codes: 0 ok, 1 other failure (registry, network, disk), 2 bad arguments,
3 invalid signature, 4 unsigned, 5 contents differ. Errors are one line each on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import httpx

from sovereign.model import credentials
from sovereign.model.digest import DigestManifest, compare, digest_directory, list_files
from sovereign.model.errors import EXIT_BAD_ARGUMENTS, ModelError, UsageError
from sovereign.model.publish import publish
from sovereign.model.pull import pull
from sovereign.model.reference import parse_reference, require_digest
from sovereign.model.registry import DEFAULT_CHUNK_SIZE, RegistryClient
from sovereign.model.signature import sign_directory, verify_directory

PROG = "sovereign model"
KEY_PASSWORD_ENV = "SOVEREIGN_MODEL_KEY_PASSWORD"
EPILOG = (
    "exit codes: 0 ok, 1 failure (registry, network, disk), 2 bad arguments, "
    "3 invalid signature, 4 unsigned, 5 contents differ"
)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry")
    group.add_argument("--username", help=f"registry user (or ${credentials.USERNAME_ENV})")
    group.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the registry password from stdin (or ${credentials.PASSWORD_ENV})",
    )
    group.add_argument(
        "--registry-config",
        type=Path,
        help="docker-style config.json with auths (default: $DOCKER_CONFIG or ~/.docker)",
    )
    group.add_argument("--ca-bundle", type=Path, help="CA certificates to trust for TLS")
    group.add_argument(
        "--plain-http", action="store_true", help="talk HTTP, not HTTPS (loopback tests only)"
    )
    group.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    group.add_argument(
        "--attempts", type=int, default=5, help="tries per blob before giving up (resumes)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0], epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    digest = commands.add_parser("digest", help="print per-file SHA-256 digests and sizes")
    digest.add_argument("directory", type=Path)
    digest.add_argument("--output", type=Path, help="write the manifest here, not stdout")

    sign = commands.add_parser("sign", help="sign a model directory (writes DIR/model.sig)")
    sign.add_argument("directory", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="EC private key (PEM)")

    verify = commands.add_parser("verify", help="check signature and every file digest")
    verify.add_argument("directory", type=Path)
    verify.add_argument("--public-key", type=Path, help="EC public key (PEM)")
    verify.add_argument(
        "--digest-manifest", type=Path, help="digest manifest the files must also match"
    )

    push = commands.add_parser("publish", help="sign if needed and push as an OCI artifact")
    push.add_argument("directory", type=Path)
    push.add_argument("reference", help="REGISTRY/REPOSITORY[:TAG]")
    signer = push.add_mutually_exclusive_group(required=True)
    signer.add_argument("--key", type=Path, help="EC private key (PEM): signs if unsigned")
    signer.add_argument(
        "--public-key",
        type=Path,
        help="EC public key (PEM): the directory must already be signed by its private key",
    )
    push.add_argument(
        "--dry-run",
        action="store_true",
        help="contact no registry: print the digest the pushed artifact will have",
    )
    push.add_argument("--name", help="model name annotation")
    push.add_argument("--revision", help="model revision annotation")
    push.add_argument("--license", help="licence annotation (SPDX expression)")
    push.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE // (1024 * 1024),
        help="upload chunk size in MiB",
    )
    _registry_options(push)

    fetch = commands.add_parser("pull", help="pull by digest, verify, move into place")
    fetch.add_argument("reference", help="REGISTRY/REPOSITORY@sha256:DIGEST")
    fetch.add_argument("destination", type=Path, help="new directory for the model")
    fetch.add_argument("--public-key", type=Path, help="EC public key (PEM)")
    fetch.add_argument(
        "--insecure-skip-signature",
        action="store_true",
        help="accept the model on blob digests alone, without a signature check",
    )
    _registry_options(fetch)
    return parser


def _client(
    args: argparse.Namespace,
    registry: str,
    transport: httpx.BaseTransport | None,
    stdin: TextIO,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> RegistryClient:
    password = stdin.readline().rstrip("\r\n") if args.password_stdin else None
    found = credentials.resolve(
        registry,
        username=args.username,
        password=password,
        config_file=args.registry_config,
    )
    return RegistryClient(
        registry,
        credentials=found,
        ca_bundle=args.ca_bundle,
        plain_http=args.plain_http,
        transport=transport,
        timeout=args.timeout,
        max_attempts=args.attempts,
        chunk_size=chunk_size,
    )


def _run(
    args: argparse.Namespace,
    out: TextIO,
    stdin: TextIO,
    transport: httpx.BaseTransport | None,
) -> None:
    password = os.environ.get(KEY_PASSWORD_ENV)
    if args.command == "digest":
        text = digest_directory(args.directory).to_json()
        if args.output:
            args.output.write_text(text, encoding="utf-8")
        else:
            out.write(text)
    elif args.command == "sign":
        out.write(f"{sign_directory(args.directory, args.key, password)}\n")
    elif args.command == "verify":
        _verify(args, out)
    elif args.command == "publish":
        target = parse_reference(args.reference)
        if args.chunk_size <= 0:
            raise UsageError("--chunk-size must be a positive number of MiB")
        chunk = args.chunk_size * 1024 * 1024
        options = {
            "private_key": args.key,
            "public_key": args.public_key,
            "password": password,
            "name": args.name,
            "revision": args.revision,
            "license": args.license,
        }
        if args.dry_run:
            result = publish(args.directory, target, None, **options)
        else:
            with _client(args, target.registry, transport, stdin, chunk) as client:
                result = publish(args.directory, target, client, **options)
        out.write(f"{result.digest}\n")
    elif args.command == "pull":
        source = parse_reference(args.reference)
        require_digest(source)
        if (args.public_key is None) == (not args.insecure_skip_signature):
            raise UsageError(
                "pull needs --public-key PEM to check the signature, or "
                "--insecure-skip-signature to accept blob digests alone (not both)"
            )
        with _client(args, source.registry, transport, stdin) as client:
            pulled = pull(source, args.destination, client, public_key=args.public_key)
        out.write(f"{pulled.path}\n")


def _verify(args: argparse.Namespace, out: TextIO) -> None:
    if args.public_key is None and args.digest_manifest is None:
        raise UsageError("verify needs --public-key, --digest-manifest, or both")
    pinned: DigestManifest | None = None
    if args.digest_manifest is not None:
        try:
            text = args.digest_manifest.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {args.digest_manifest}: {exc.strerror}") from exc
        pinned = DigestManifest.from_json(text, str(args.digest_manifest))
    if args.public_key is not None:
        signed = verify_directory(args.directory, args.public_key).files
        if pinned is not None:
            # The files match the signature; now the signature must match the pin.
            expected = {item.path: item.sha256 for item in pinned.files}
            compare(expected, signed).raise_if_any(
                f"{args.directory} is validly signed but differs from {args.digest_manifest}"
            )
            sizes = {path: size for path, _, size in list_files(args.directory)}
            wrong = [item.path for item in pinned.files if sizes.get(item.path) != item.size]
            if wrong:
                raise UsageError(
                    f"{args.digest_manifest} lists sizes that do not match: {', '.join(wrong)}"
                )
        out.write(f"OK: {args.directory} matches its signature ({len(signed)} files)\n")
        return
    assert pinned is not None
    actual = digest_directory(args.directory)
    compare(
        {item.path: item.sha256 for item in pinned.files},
        {item.path: item.sha256 for item in actual.files},
    ).raise_if_any(f"{args.directory} differs from {args.digest_manifest}")
    out.write(
        f"OK: {args.directory} matches {args.digest_manifest} ({len(actual.files)} files; "
        "signature not checked)\n"
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code. ``transport`` lets tests stand in a registry."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        _run(args, out, stdin or sys.stdin, transport)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_ARGUMENTS
    except ModelError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        for line in getattr(exc, "details", ()):
            err.write(f"{PROG}:   {line}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted; a pull or publish run again resumes\n")
        return 130
    return 0
