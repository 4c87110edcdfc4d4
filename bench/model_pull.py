"""Benchmark: pull + verify of a multi-GB model artifact against `cp` of the same bytes.

Usage: .venv/bin/python bench/model_pull.py [--size-gib 2] [--workdir /var/tmp]

Everything runs on this machine: a real CNCF distribution registry (Debian's
docker-registry) on 127.0.0.1 with TLS and htpasswd, the model on the same
disk as the copy. Prints, as ratios to `cp -r` of the model directory:
  1. `sovereign model pull` (download, SHA-256 of every blob while streaming,
     signature check, atomic rename) of the whole artifact;
  2. `sovereign model verify` of the local copy (what a serving start costs);
and, for a pull whose connection drops half-way through the largest blob
and is resumed by a second run, how many bytes crossed the network twice.
The page cache is warm for every run alike; figures are for comparison
within one run of this script, not absolute disk speeds.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.local_registry import (  # noqa: E402
    RegistryUnavailable,
    local_registry,
    write_key_pair,
)

from sovereign.model.cli import main  # noqa: E402

CHUNK = 16 * 1024 * 1024


class DroppedConnection(httpx.ReadError):
    """The benchmark's stand-in for a network cut."""


class CountingStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, meter: Meter) -> None:
        self._inner = inner
        self._meter = meter

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._meter.received += len(chunk)
            if (
                self._meter.drop_after is not None
                and self._meter.received >= self._meter.drop_after
            ):
                self._meter.drop_after = None
                raise DroppedConnection("connection dropped by the benchmark")
            yield chunk

    def close(self) -> None:
        self._inner.close()


class Meter(httpx.BaseTransport):
    """An HTTP transport that counts body bytes received and can cut once."""

    def __init__(self, verify: str, drop_after: int | None = None) -> None:
        self._inner = httpx.HTTPTransport(verify=verify)
        self.received = 0
        self.drop_after = drop_after

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = CountingStream(response.stream, self)
        return response

    def close(self) -> None:
        self._inner.close()


def make_model(directory: Path, size: int) -> None:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}\n')
    shard = size // 2
    for index in range(2):
        with (directory / f"model-0000{index + 1}-of-00002.safetensors").open("wb") as out:
            left = shard
            while left:
                block = min(CHUNK, left)
                out.write(os.urandom(block))
                left -= block


def run_cli(*argv: str, password: str, transport: httpx.BaseTransport | None = None) -> int:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        list(argv), stdout=out, stderr=err, stdin=io.StringIO(password), transport=transport
    )
    if code not in (0, 1):
        raise SystemExit(f"sovereign model {argv[0]} failed ({code}): {err.getvalue()}")
    return code


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()
    size = int(args.size_gib * 1024**3)
    with tempfile.TemporaryDirectory(prefix="sovereign-bench-", dir=args.workdir) as scratch:
        work = Path(scratch)
        (work / "registry").mkdir()
        try:
            registry_cm = local_registry(work / "registry")
            registry = registry_cm.__enter__()
        except RegistryUnavailable as exc:
            print(f"model_pull: skipped: {exc}")
            return 0
        try:
            return bench(
                work, size, registry.address, registry.ca, registry.user, registry.password
            )
        finally:
            registry_cm.__exit__(None, None, None)


def bench(work: Path, size: int, address: str, ca: Path, user: str, password: str) -> int:
    private, public = write_key_pair(work)
    model = work / "model"
    print(f"model_pull: {size / 1024**3:.1f} GiB artifact in 2 shards, registry {address}")
    make_model(model, size)
    auth = ["--username", user, "--password-stdin", "--ca-bundle", str(ca)]
    reference = f"{address}/models/bench:v1"
    out = io.StringIO()
    start = time.perf_counter()
    code = main(
        ["publish", str(model), reference, "--key", str(private), *auth],
        stdout=out,
        stderr=sys.stderr,
        stdin=io.StringIO(password),
    )
    publish_s = time.perf_counter() - start
    if code != 0:
        return code
    digest = out.getvalue().strip().split()[-1]
    pinned = f"{address}/models/bench@{digest}"

    cp_s = timed(lambda: subprocess.run(["cp", "-r", str(model), str(work / "copy")], check=True))
    shutil.rmtree(work / "copy")

    def pull(dest: str, meter: Meter, *extra: str) -> int:
        argv = ["pull", pinned, str(work / dest), "--public-key", str(public), *extra, *auth]
        return run_cli(*argv, password=password, transport=meter)

    meter = Meter(str(ca))
    pull_s = timed(lambda: pull("pulled", meter))
    full_bytes = meter.received
    verify_s = timed(
        lambda: run_cli("verify", str(work / "pulled"), "--public-key", str(public), password="")
    )

    # Cut the connection half-way through the artifact, then resume.
    cut = Meter(str(ca), drop_after=size // 2)
    first = pull("resumed", cut, "--attempts", "1")
    second = Meter(str(ca))
    resumed = pull("resumed", second)
    if first != 1 or resumed != 0:
        print(f"model_pull: the interrupted pull did not behave: first={first} resumed={resumed}")
        return 1
    twice = cut.received + second.received - full_bytes

    print(f"  publish (sign + chunked upload)      {publish_s:7.2f} s")
    print(f"  cp -r (reference)                    {cp_s:7.2f} s   1.00x")
    print(f"  pull + verify every blob + signature {pull_s:7.2f} s   {pull_s / cp_s:5.2f}x cp")
    print(f"  verify local copy (serving start)    {verify_s:7.2f} s   {verify_s / cp_s:5.2f}x cp")
    print(
        f"  interrupted at {cut.received / 1024**2:.0f} MiB and resumed: "
        f"{twice / 1024**2:.2f} MiB transferred twice "
        f"({twice / full_bytes:.4%} of {full_bytes / 1024**2:.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
