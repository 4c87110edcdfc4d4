"""The console pages (roles/prometheus/files/consoles, with the library the
role renders from templates/console_libraries): Debian's Prometheus serves
them with the
platform's rules loaded, scraping a real vLLM /metrics (the fixture), the
gateway's real metrics and an evaluation that failed its gate; headless
Chromium renders each page, and its DOM is read: panels with a source show
numbers, panels without one say "no data", a firing alert links its runbook.
sovereign.lib describes the markup these tests read."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import generate_latest

from sovereign.gateway.admission import CHAT
from sovereign.gateway.metrics import GatewayMetrics
from tests.support import chromium, prometheus_server
from tests.support.redis_server import free_port
from tests.unit.observability.test_alert_rules import (
    ROLE,
    ROOT,
    render_console_libraries,
    render_rules,
)
from tests.unit.observability.test_dashboards import _dashboard, _queries

CONSOLES = ROLE / "files" / "consoles"
VLLM_FIXTURE = ROOT / "tests" / "prometheus" / "fixtures" / "vllm-0.32.0-cpu-metrics.txt"
# The pages and the query string Chromium loads each with: the alert
# history at one-second steps (its default, a minute, would show the alert
# only after the next full minute).
PAGES = {"cluster-health": "", "incident-timeline": "?step=1s", "index": ""}
# Their panels' ids (data-panel), which links and tests rely on.
PANELS = {
    "cluster-health": {
        *("ttft", "itl", "e2e", "tokens", "queue", "kv-cache"),
        *("requests", "rejections", "client-latency", "audit", "prompt-tokens"),
        *("gpu", "targets", "disks", "certificates"),
    },
    "incident-timeline": {
        *("firing", "pending", "history", "restarts", "eval-gate", "errors", "rejections"),
        *("ttft", "drained", "audit", "certificates"),
    },
    "index": {"alerts", "targets"},
}
MODEL = "sovereign-tiny"
TIER = "interactive"
# Evaluated once the rules have run on a few scrapes: every one must answer.
READY_QUERIES = (
    f'model_tier:vllm_time_to_first_token_seconds:p99_5m{{model_name="{MODEL}"}}',
    f'model:sovereign_gateway_errors:ratio_rate5m{{model="{MODEL}"}}',
    "reason:sovereign_gateway_rejections:rate5m",
    'ALERTS{alertname="EvalQualityRegression", alertstate="firing"}',
    'ALERTS{alertname="TargetDown", alertstate="pending"}',
)


# --- What Prometheus scrapes -----------------------------------------------------


class _Vllm:
    """The vLLM fixture, its counters (counters, histograms' buckets, counts
    and sums) multiplied by the number of scrapes so far: a busy server
    whose rates and latency quantiles are real numbers, where the fixture
    alone, served unchanged, would give rates of 0 and quantiles of NaN."""

    _SUFFIXES = ("_bucket", "_count", "_sum")

    def __init__(self, text: str) -> None:
        types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
        self._lines = [(line, self._grows(line, types)) for line in text.splitlines()]
        self._scrapes = 0

    @classmethod
    def _grows(cls, line: str, types: dict[str, str]) -> bool:
        if line.startswith("#") or not line:
            return False
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if types.get(name) == "counter":
            return True
        base = next((name.removesuffix(s) for s in cls._SUFFIXES if name.endswith(s)), None)
        return base is not None and types.get(base) in ("histogram", "summary")

    def scrape(self) -> bytes:
        self._scrapes += 1
        out = []
        for line, grows in self._lines:
            if grows:
                sample, value = line.rsplit(" ", 1)
                line = f"{sample} {float(value) * self._scrapes!r}"
            out.append(line)
        return ("\n".join(out) + "\n").encode()


class _Gateway:
    """The gateway's own metrics (GatewayMetrics), each scrape after three
    answers (one a 503), a refusal and an audit batch."""

    def __init__(self) -> None:
        self.metrics = GatewayMetrics()
        self.metrics.audit_healthy.set(1)
        self.metrics.watch_backends(lambda: ({"http://127.0.0.1:8000": 1}, frozenset()))

    def scrape(self) -> bytes:
        m = self.metrics
        for status, seconds in (("200", 0.8), ("200", 1.2), ("503", 0.05)):
            m.requests.labels(CHAT, MODEL, status).inc()
            m.duration.labels(CHAT, MODEL).observe(seconds)
        m.first_byte.labels(MODEL).observe(0.06)
        m.tokens.labels(MODEL, "none", "prompt").inc(80)
        m.tokens.labels(MODEL, "none", "completion").inc(30)
        m.rejections.labels("quota_exceeded").inc()
        m.audit_write.observe(0.004)
        return generate_latest(m.registry)


def _node() -> bytes:
    """What the evaluation leaves to the node exporter's textfile collector
    (names as sovereign.eval writes them): a run that failed its gate."""
    finished = time.time() - 3600
    return (
        "# TYPE sovereign_eval_gate_passed gauge\n"
        f'sovereign_eval_gate_passed{{dataset="tiny_qa",model="{MODEL}"}} 0\n'
        "# TYPE sovereign_eval_accuracy gauge\n"
        f'sovereign_eval_accuracy{{dataset="tiny_qa",model="{MODEL}"}} 0.61\n'
        "# TYPE sovereign_eval_baseline_accuracy gauge\n"
        f'sovereign_eval_baseline_accuracy{{dataset="tiny_qa",model="{MODEL}"}} 0.82\n'
        "# TYPE sovereign_eval_last_run_timestamp_seconds gauge\n"
        f'sovereign_eval_last_run_timestamp_seconds{{dataset="tiny_qa",model="{MODEL}"}} '
        f"{finished}\n"
    ).encode()


class _Exporters(ThreadingHTTPServer):
    """/vllm, /gateway and /node on one loopback port."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.vllm = _Vllm(VLLM_FIXTURE.read_text())
        self.gateway = _Gateway()


class _Handler(BaseHTTPRequestHandler):
    server: _Exporters

    def do_GET(self) -> None:
        with self.server.lock:
            if self.path == "/vllm":
                body = self.server.vllm.scrape()
            elif self.path == "/gateway":
                body = self.server.gateway.scrape()
            elif self.path == "/node":
                body = _node()
            else:
                self.send_error(404)
                return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --- Prometheus and the pages ------------------------------------------------------


@pytest.fixture(scope="module")
def exporters() -> Iterator[str]:
    server = _Exporters()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _scrape_config(job: str, target: str, path: str, **labels: str) -> dict[str, Any]:
    group: dict[str, Any] = {"targets": [target]}
    if labels:
        group["labels"] = labels
    return {"job_name": job, "metrics_path": path, "static_configs": [group]}


def _wait_for_data(url: str, timeout_s: float = 60.0) -> None:
    """Return once every READY_QUERIES answers with a number: scraped
    several times and the rules evaluated on it."""
    deadline = time.monotonic() + timeout_s
    waiting = list(READY_QUERIES)
    while waiting:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": waiting[0]}, timeout=5)
        result = answer.json()["data"]["result"]
        if result and all(math.isfinite(float(item["value"][1])) for item in result):
            waiting.pop(0)
            continue
        assert time.monotonic() < deadline, f"no value for {waiting[0]} in {timeout_s:g} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, exporters: str) -> Iterator[str]:
    """Debian's Prometheus with the rendered rules and the consoles, scraping
    the exporters every second; yielded once the pages have figures."""
    if prometheus_server.binary() is None:
        pytest.skip(prometheus_server.MISSING_REASON)
    work = tmp_path_factory.mktemp("prometheus")
    rules = render_rules(work)
    # The recording groups run every 30 s; here every second, so that the
    # pages have their figures a few seconds after the start. The
    # expressions are the rules' own.
    for path in rules:
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            group["interval"] = "1s"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [
            _scrape_config("vllm", exporters, "/vllm", tier=TIER),
            _scrape_config("gateway", exporters, "/gateway"),
            _scrape_config("node", exporters, "/node"),
            # Nothing listens there: a target down.
            _scrape_config("redis", f"127.0.0.1:{free_port()}", "/metrics"),
        ],
    }
    libraries = render_console_libraries(work / "console_libraries")
    consoles = (f"--web.console.templates={CONSOLES}", f"--web.console.libraries={libraries}")
    with prometheus_server.running(work, config, *consoles) as url:
        _wait_for_data(url)
        yield url


@dataclass
class Panel:
    nodata: bool = False
    rows: list[dict[str, str | None]] = field(default_factory=list)


class _Page(HTMLParser):
    """The panels of a console page, by their data-panel: whether each says
    "no data" (in its data-nodata element), and its rows: every data-label's
    text and every data-stat's value (None where the cell has none); runbook
    links as "runbook"."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.title = ""
        self.panels: dict[str, Panel] = {}
        self.repeated: list[str] = []
        self._panel: Panel | None = None
        self._depth = 0
        self._row: dict[str, str | None] | None = None
        self._label: str | None = None
        self._stat: str | None = None
        self._in_title = False
        self._in_nodata = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "title":
            self._in_title = True
        if tag == "section":
            if self._panel is not None:
                self._depth += 1
            elif (name := a.get("data-panel")) is not None:
                if name in self.panels:
                    self.repeated.append(name)
                self._panel = self.panels[name] = Panel()
                self._depth = 0
        if self._panel is None:
            return
        if "data-nodata" in a:
            self._in_nodata = True
        elif tag == "tr" and "data-row" in a:
            self._row = {}
            self._panel.rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._label, self._stat = a.get("data-label"), a.get("data-stat")
            if self._label is not None:
                self._row[self._label] = ""
            if self._stat is not None:
                self._row[self._stat] = None
        elif tag == "data" and self._row is not None and self._stat is not None:
            self._row[self._stat] = a.get("value")
        elif tag == "a" and self._row is not None and "data-runbook" in a:
            self._row["runbook"] = a.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "section" and self._panel is not None:
            if self._depth == 0:
                self._panel = None
            self._depth -= 1
        elif tag == "p":
            self._in_nodata = False
        elif tag == "td":
            self._label = self._stat = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._in_nodata and self._panel is not None and data.strip() == "no data":
            self._panel.nodata = True
        if self._row is not None and self._label is not None:
            self._row[self._label] = (self._row[self._label] or "") + data


@dataclass
class Rendered:
    status: int
    source: str
    page: _Page


@pytest.fixture(scope="module")
def pages(prometheus: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """Each page: Prometheus's answer, and the DOM Chromium built from it."""
    if chromium.binary() is None:
        pytest.skip(chromium.MISSING_REASON)
    profile = tmp_path_factory.mktemp("chromium")
    rendered = {}
    for name, query in PAGES.items():
        url = f"{prometheus}/consoles/{name}.html{query}"
        answer = httpx.get(url, timeout=30)
        dom = chromium.dump_dom(url, profile) if answer.status_code == 200 else ""
        rendered[name] = Rendered(answer.status_code, answer.text, _Page(dom))
    return rendered


def _row(panel: Panel, **labels: str) -> dict[str, str | None]:
    found = [row for row in panel.rows if all(row.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{labels} in {panel.rows}"
    return found[0]


def _number(value: str | None) -> float:
    assert value is not None, "the cell has no value"
    number = float(value)
    assert math.isfinite(number), value
    return number


# --- Tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_each_page_renders_in_chromium(pages: dict[str, Rendered], name: str) -> None:
    rendered = pages[name]
    assert rendered.status == 200, rendered.source[-2000:]
    assert "error executing template" not in rendered.source
    assert "ZgotmplZ" not in rendered.source, "html/template refused a value"
    page = rendered.page
    assert page.title.endswith("· Sovereign"), page.title
    assert page.repeated == [], "panel ids repeat"
    assert set(page.panels) == PANELS[name]
    for panel_id, panel in page.panels.items():
        assert panel.nodata != bool(panel.rows), f"{name} {panel_id}: data and no data at once"


def test_the_serving_panels_show_the_scraped_vllm(pages: dict[str, Rendered]) -> None:
    panels = pages["cluster-health"].page.panels
    stats = {
        "ttft": ("p50", "p95", "p99"),
        "itl": ("p50", "p95", "p99"),
        "e2e": ("p50", "p95", "p99"),
        "tokens": ("generated/s", "read/s"),
        "queue": ("waiting", "running", "finished/s"),
        "kv-cache": ("KV cache", "preemptions/s"),
    }
    for panel_id, names in stats.items():
        row = _row(panels[panel_id], model_name=MODEL, tier=TIER)
        for name in names:
            _number(row[name])
    ttft = _row(panels["ttft"], model_name=MODEL, tier=TIER)
    # The fixture's two requests took 10-40 ms to their first token.
    assert 0.01 <= _number(ttft["p50"]) <= 0.04
    assert _number(_row(panels["tokens"], model_name=MODEL)["generated/s"]) > 0


def test_the_gateway_panels_show_the_gateway(pages: dict[str, Rendered]) -> None:
    panels = pages["cluster-health"].page.panels
    requests = _row(panels["requests"], model=MODEL)
    assert _number(requests["requests/s"]) > 0
    assert _number(requests["5xx share"]) == pytest.approx(1 / 3, rel=0.05)
    assert _number(_row(panels["rejections"], reason="quota_exceeded")["refused/s"]) > 0
    _number(_row(panels["client-latency"], model=MODEL)["whole request"])
    audit = panels["audit"].rows
    assert len(audit) == 1 and _number(audit[0]["healthy"]) == 1
    _number(audit[0]["batch write p99"])
    prompt = _row(panels["prompt-tokens"], model=MODEL)
    assert _number(prompt["now"]) == pytest.approx(40, rel=0.05)
    assert prompt["a day earlier"] is None, "a series a day old in a fresh Prometheus"


def test_the_targets_panel_counts_up_and_down(pages: dict[str, Rendered]) -> None:
    panel = pages["cluster-health"].page.panels["targets"]
    for job in ("vllm", "gateway", "node"):
        row = _row(panel, job=job)
        assert (_number(row["up"]), _number(row["down"])) == (1, 0), job
    assert _number(_row(panel, job="redis")["down"]) == 1


@pytest.mark.parametrize(
    ("name", "panel_ids"),
    [
        ("cluster-health", ("gpu", "disks", "certificates")),
        ("incident-timeline", ("certificates",)),
    ],
)
def test_panels_without_a_source_say_no_data(
    pages: dict[str, Rendered], name: str, panel_ids: tuple[str, ...]
) -> None:
    panels = pages[name].page.panels
    for panel_id in panel_ids:
        assert panels[panel_id].nodata and not panels[panel_id].rows, panel_id


def test_a_firing_alert_links_its_runbook(pages: dict[str, Rendered], prometheus: str) -> None:
    panels = pages["incident-timeline"].page.panels
    row = _row(panels["firing"], alertname="EvalQualityRegression")
    assert row["severity"] == "critical"
    assert f'model="{MODEL}"' in (row["labels"] or "")
    _number(row["active for"])
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    annotation = next(
        alert["annotations"]["runbook_url"]
        for alert in alerts
        if alert["labels"]["alertname"] == "EvalQualityRegression"
    )
    assert row["runbook"] == annotation
    # TargetDown waits 3 minutes before it fires: pending, not firing.
    assert _row(panels["pending"], alertname="TargetDown")["severity"] == "critical"
    assert all(row["alertname"] != "TargetDown" for row in panels["firing"].rows)


def test_the_incident_panels_show_restarts_and_the_eval_gate(pages: dict[str, Rendered]) -> None:
    panels = pages["incident-timeline"].page.panels
    vllm = _row(panels["restarts"], job="vllm")
    assert _number(vllm["last hour"]) == 0
    gate = _row(panels["eval-gate"], model=MODEL, dataset="tiny_qa")
    assert _number(gate["gate"]) == 0
    assert _number(gate["accuracy"]) == pytest.approx(0.61)
    history = _row(panels["history"], alertname="EvalQualityRegression", severity="critical")
    assert _number(history["firing for"]) > 0
    assert _number(history["last fired"]) == pytest.approx(time.time(), abs=30)
    assert _number(_row(panels["errors"], model=MODEL)["5xx/s"]) > 0


def test_the_model_filter_narrows_the_serving_panels(prometheus: str) -> None:
    answer = httpx.get(
        f"{prometheus}/consoles/cluster-health.html", params={"model": "no-such-model"}, timeout=30
    )
    assert answer.status_code == 200, answer.text[-2000:]
    panels = _Page(answer.text).panels
    for panel_id in ("ttft", "queue", "kv-cache", "requests"):
        assert panels[panel_id].nodata, panel_id
    assert not panels["targets"].nodata


def test_the_runbook_base_and_the_history_step_have_defaults(prometheus: str) -> None:
    url = f"{prometheus}/consoles/incident-timeline.html"
    plain = httpx.get(url, timeout=30)
    assert plain.status_code == 200, plain.text[-2000:]
    assert "a resolution of 1m" in plain.text
    moved = httpx.get(url, params={"runbook_base": "https://wiki.example/rb"}, timeout=30)
    row = _row(_Page(moved.text).panels["firing"], alertname="EvalQualityRegression")
    assert row["runbook"] == "https://wiki.example/rb/EvalQualityRegression.md"


# PromQL words that are not series or labels.
_PROMQL_WORDS = {
    *("by", "without", "on", "ignoring", "group_left", "group_right", "bool"),
    *("and", "or", "unless", "offset"),
    *("sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk"),
}


def _series_and_labels(query: str) -> set[str]:
    """The metric and label names a PromQL expression reads."""
    query = re.sub(r'"[^"]*"', '""', query)  # label values
    query = re.sub(r"\[[^\]]*\]|\boffset\s+\w+|\$\w+", "", query)  # durations, variables
    words = re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", query)
    return {word for word, call in words if not call and word not in _PROMQL_WORDS}


@pytest.mark.parametrize("name", ("cluster-health", "incident-timeline"))
def test_each_console_reads_what_its_dashboard_reads(name: str) -> None:
    """The console mirrors its Grafana dashboard: every series (recorded or
    raw) and label the dashboard's queries read, the console reads too."""
    used = set().union(*(_series_and_labels(query) for query in _queries(_dashboard(name))))
    assert "model_tier:vllm_time_to_first_token_seconds:p99_5m" in used
    console = (CONSOLES / f"{name}.html").read_text()
    read = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", console))
    assert used - read == set()
