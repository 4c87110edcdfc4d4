"""Benchmark: latency the inference gateway adds, against nginx proxy_pass and no proxy.

Usage: .venv/bin/python bench/gateway.py [--seconds 6] [--rate 500] [--concurrency 32]
                                         [--repeat 2] [--audit-dir DIR]

Everything runs on this machine, on loopback: a fake OpenAI backend (raw
asyncio on uvloop, in its own process, answering at once; it also serves the
IdP's discovery document and JWKS), a throwaway redis-server, Debian's nginx
with a temporary configuration, and ``sovereign gateway serve`` with bearer
JWT auth, quotas in Redis and a signed, fsync'd audit log. The same load is
sent three ways: directly to the backend, through nginx ``proxy_pass``, and
through the gateway, for small non-streamed chat completions and for
streamed ones (8 events plus the usage chunk):
  1. open loop at ``--rate`` requests/s for ``--seconds``: p50/p99 latency,
     and what the proxy adds to the direct figures;
  2. closed loop with ``--concurrency`` requests in flight: requests/s, as a
     ratio to the direct run, and the CPU time the serving process (backend,
     nginx or gateway) spent per request, from /proc: unlike latency, that
     figure hardly moves with the load other jobs put on the machine.
Each measurement is repeated ``--repeat`` times, interleaved (direct, nginx,
gateway, then again): the table shows the best of them (lowest latency,
highest requests/s) and the spread (worst minus best), since other jobs on a
shared machine disturb single runs. ``--audit-dir`` puts the gateway's audit
log in a directory of that file system (say /dev/shm against a disk); by
default it is in the temporary directory; the report names the file system.
The target recorded at the end: p99 added latency under 2 ms at 500
requests/s. ``BENCH_PROFILE=FILE`` runs the gateway under cProfile and leaves
its statistics in FILE (read them with ``pstats``; the figures above are then
not comparable). The load generator shares the CPUs with everything it measures;
compare figures within one run, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvloop
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import (  # noqa: E402
    RedisUnavailable,
    free_port,
    redis_server,
)

NGINX = Path("/usr/sbin/nginx")
ISSUER = "http://127.0.0.1:{port}/idp"
AUDIENCE = "sovereign-gateway"
MODEL = "tiny"
USAGE = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}


# -- the fake backend ------------------------------------------------------------------


def _completion() -> bytes:
    return json.dumps(
        {
            "id": "cmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()


def _stream() -> bytes:
    events: list[dict[str, object]] = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": "tok "}}],
        }
        for _ in range(8)
    ]
    events.append({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def _response(body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def _backend_main(port: int, jwks: dict[str, Any], ready: Any) -> None:
    issuer = ISSUER.format(port=port)
    answers = {
        b"/v1/chat/completions": _response(_completion(), "application/json"),
        b"stream": _response(_stream(), "text/event-stream"),
        b"/idp/.well-known/openid-configuration": _response(
            json.dumps({"issuer": issuer, "jwks_uri": f"{issuer}/jwks"}).encode(),
            "application/json",
        ),
        b"/idp/jwks": _response(json.dumps(jwks).encode(), "application/json"),
    }

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                path = head.split(b" ", 2)[1]
                if path == b"/v1/chat/completions" and b'"stream": true' in body:
                    path = b"stream"
                writer.write(
                    answers.get(path, b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        ready.set()
        async with server:
            await stop.wait()

    uvloop.run(main())


# -- the load -------------------------------------------------------------------------


def _body(stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say ok."}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


class Connection:
    """A bare keep-alive HTTP/1.1 client connection: the load generator must cost
    far less than what it measures (httpx alone tops out near 500 requests/s here)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(head + body)
        try:
            status_head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # the server closed an idle connection
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(head + body)
            status_head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(status_head[9:12])
        length, chunked = 0, False
        for line in status_head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status


class Pool:
    def __init__(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = (
            f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nhost: {self.host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        ).encode()
        self.body = body
        self.idle: list[Connection] = []

    async def one(self) -> float:
        connection = self.idle.pop() if self.idle else Connection(self.host, self.port)
        started = time.perf_counter()
        status = await connection.request(self.head, self.body)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"{self.host}:{self.port}: HTTP {status}")
        self.idle.append(connection)
        return elapsed

    def close(self) -> None:
        for connection in self.idle:
            if connection.writer is not None:
                connection.writer.close()


async def open_loop(
    url: str, body: bytes, headers: dict[str, str], rate: float, seconds: float
) -> list[float]:
    """Start requests on a fixed schedule, whatever the answers do; their latencies."""
    pool = Pool(url, body, headers)
    try:
        for _ in range(50):  # warm up
            await pool.one()
        await asyncio.gather(*(pool.one() for _ in range(32)))
        tasks = []
        start = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(pool.one()))
        return list(await asyncio.gather(*tasks))
    finally:
        pool.close()


async def closed_loop(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float, pid: int
) -> tuple[float, float]:
    """Requests/s with ``concurrency`` always in flight, and process ``pid``'s CPU
    milliseconds per request."""
    pool = Pool(url, body, headers)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await pool.one()
            done += 1

    try:
        started, cpu = time.perf_counter(), _cpu_seconds(pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = done / (time.perf_counter() - started)
        return rate, (_cpu_seconds(pid) - cpu) * 1000 / max(done, 1)
    finally:
        pool.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the proxies ------------------------------------------------------------------------


def _wait_port(port: int, process: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def start_nginx(work: Path, backend_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 256; }}
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    )
    process = subprocess.Popen([str(NGINX), "-c", str(conf), "-e", str(work / "nginx-error.log")])
    _wait_port(port, process, "nginx")
    return process, port


def start_gateway(
    work: Path, backend_port: int, redis_url: str, audit_dir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    key = ec.generate_private_key(ec.SECP256R1())
    signing_key = work / "audit-signing.pem"
    signing_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    backend = f"http://127.0.0.1:{backend_port}"
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "metrics_listen": {"host": "127.0.0.1", "port": free_port()},
        "identity": {
            "oidc": {
                "issuer": ISSUER.format(port=backend_port),
                "audience": AUDIENCE,
                "algorithms": ["RS256"],
            }
        },
        "redis_url": redis_url,
        "quotas": {"user_defaults": {"requests_per_minute": 10_000_000, "tokens_per_day": 10**12}},
        "models": {
            MODEL: {
                "versions": [
                    {
                        "name": "stable",
                        "weight": 95,
                        "digest": "sha256:" + "a" * 64,
                        "backends": {"general": [backend]},
                    },
                    {
                        "name": "canary",
                        "weight": 5,
                        "digest": "sha256:" + "b" * 64,
                        "backends": {"general": [backend]},
                    },
                ]
            }
        },
        "tiers": {"general": {}},
        "routing": {
            "data_classes": ["internal"],
            "rules": [{"name": "everyone", "tier": "general"}],
        },
        "audit": {"directory": str(audit_dir), "signing_key": str(signing_key)},
        "logging": {"level": "INFO", "access_log": True},
    }
    path = work / "gateway.yml"
    path.write_text(yaml.safe_dump(config))
    log = (work / "gateway.log").open("wb")
    # BENCH_PROFILE=FILE: run the gateway under cProfile, its stats written to FILE.
    profile = os.environ.get("BENCH_PROFILE")
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    process = subprocess.Popen(
        [sys.executable, *profiler, "-m", "sovereign.gateway", "serve", "--config", str(path)],
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    _wait_port(port, process, "the gateway")
    return process, port


# -- the run ------------------------------------------------------------------------------


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests/s")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop in flight")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement")
    parser.add_argument(
        "--audit-dir",
        type=Path,
        default=None,
        help="put the audit log under this directory (default: the temporary directory)",
    )
    args = parser.parse_args()

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update(kid="bench", use="sig", alg="RS256")
    backend_port = free_port()
    ready = multiprocessing.Event()
    backend = multiprocessing.Process(
        target=_backend_main, args=(backend_port, {"keys": [jwk]}, ready), daemon=True
    )
    backend.start()
    ready.wait(10)
    token = jwt.encode(
        {
            "iss": ISSUER.format(port=backend_port),
            "aud": AUDIENCE,
            "sub": "bench",
            "preferred_username": "bench-user",
            "groups": ["staff"],
            "team": "bench",
            "exp": int(time.time()) + 3600,
        },
        rsa_key,
        algorithm="RS256",
        headers={"kid": "bench"},
    )
    assert backend.pid is not None
    targets: dict[str, Target] = {
        "direct": (f"http://127.0.0.1:{backend_port}/v1/chat/completions", {}, backend.pid),
    }
    processes: list[subprocess.Popen[bytes]] = []
    work = Path(tempfile.mkdtemp(prefix="sovereign-bench-gateway-"))
    audit_root = Path(tempfile.mkdtemp(prefix="sovereign-bench-audit-", dir=args.audit_dir))
    notes = [f"audit log on {_file_system(audit_root)} ({audit_root})"]
    try:
        if NGINX.exists():
            nginx, nginx_port = start_nginx(work, backend_port)
            processes.append(nginx)
            targets["nginx"] = (
                f"http://127.0.0.1:{nginx_port}/v1/chat/completions",
                {},
                _nginx_worker(nginx.pid),
            )
        else:
            notes.append(f"nginx leg skipped: {NGINX} missing (apt-get install nginx)")
        with redis_server() as redis_url:
            gateway, gateway_port = start_gateway(
                work, backend_port, redis_url, audit_root / "audit"
            )
            processes.append(gateway)
            targets["gateway"] = (
                f"http://127.0.0.1:{gateway_port}/v1/chat/completions",
                {"Authorization": f"Bearer {token}", "X-Sovereign-Data-Class": "internal"},
                gateway.pid,
            )
            results = _measure(targets, args)
    except RedisUnavailable as exc:
        print(f"cannot run: {exc}")
        return 1
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        backend.terminate()
        backend.join(10)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(audit_root, ignore_errors=True)
    _report(results, args, notes)
    return 0


def _file_system(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or "unknown"."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return f"{kind} ({best})" if best else kind


Results = dict[tuple[str, str], dict[str, float]]


Target = tuple[str, dict[str, str], int]  # URL, headers, the serving process


def _nginx_worker(master: int) -> int:
    """nginx's one worker process (it does the proxying), or the master if none is seen."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children")
        found = children.read_text().split() if children.exists() else []
        if found:
            return int(found[0])
        time.sleep(0.05)
    return master


def _measure(targets: dict[str, Target], args: argparse.Namespace) -> Results:
    """Best of ``--repeat`` runs per target and load, and the spread of each figure."""
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    run: Callable[[Any], Any] = uvloop.run
    for kind in ("plain", "stream"):
        body = _body(kind == "stream")
        for attempt in range(args.repeat):
            for name, (url, headers, pid) in targets.items():
                latencies = run(open_loop(url, body, headers, args.rate, args.seconds))
                throughput, cpu_ms = run(
                    closed_loop(url, body, headers, args.concurrency, args.seconds / 2, pid)
                )
                row = {
                    "p50": statistics.median(latencies) * 1000,
                    "p99": _percentile(latencies, 0.99) * 1000,
                    "rps": throughput,
                    "cpu": cpu_ms,
                }
                runs.setdefault((name, kind), []).append(row)
                print(
                    f"  {kind:<6} {name:<8} run {attempt + 1}: p50 {row['p50']:7.2f} ms  "
                    f"p99 {row['p99']:7.2f} ms  max {throughput:7.0f} req/s  "
                    f"CPU {cpu_ms:.3f} ms/req",
                    flush=True,
                )
    results: Results = {}
    for key, rows in runs.items():
        best = {
            "p50": min(r["p50"] for r in rows),
            "p99": min(r["p99"] for r in rows),
            "rps": max(r["rps"] for r in rows),
            "cpu": min(r["cpu"] for r in rows),
        }
        for figure in ("p50", "p99", "rps"):
            values = [r[figure] for r in rows]
            best[f"{figure}_spread"] = max(values) - min(values)
        results[key] = best
    return results


def _report(results: Results, args: argparse.Namespace, notes: list[str]) -> None:
    print()
    print(
        f"best of {args.repeat} runs; ± is the spread (worst - best) over the runs; "
        f"{args.rate:.0f} req/s open loop, {args.concurrency} in flight closed loop"
    )
    print(
        f"{'load':<7}{'path':<9}{'p50 ms':>8}{'p99 ms':>8}{'± p99':>8}{'+p50 ms':>9}"
        f"{'+p99 ms':>9}{'max req/s':>11}{'± req/s':>9}{'x direct':>10}{'CPU ms/req':>12}"
    )
    verdicts = []
    for kind in ("plain", "stream"):
        direct = results["direct", kind]
        for name in ("direct", "nginx", "gateway"):
            if (name, kind) not in results:
                continue
            row = results[name, kind]
            added50, added99 = row["p50"] - direct["p50"], row["p99"] - direct["p99"]
            print(
                f"{kind:<7}{name:<9}{row['p50']:8.2f}{row['p99']:8.2f}{row['p99_spread']:8.2f}"
                f"{added50:9.2f}{added99:9.2f}{row['rps']:11.0f}{row['rps_spread']:9.0f}"
                f"{row['rps'] / direct['rps']:10.2f}{row['cpu']:12.3f}"
            )
            if name == "gateway":
                verdicts.append((kind, added99))
    print()
    for kind, added99 in verdicts:
        met = "MET" if added99 < 2.0 else "NOT MET"
        print(
            f"target p99 added < 2 ms at {args.rate:.0f} req/s ({kind}): {met} "
            f"(+{added99:.2f} ms on {os.cpu_count()} CPUs)"
        )
    for note in notes:
        print(note)


if __name__ == "__main__":
    raise SystemExit(main_bench())
