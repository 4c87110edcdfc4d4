"""``sovereign eval`` end to end, against OpenAI-compatible servers on 127.0.0.1."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXTRA_REASON, INSPECT_WARNINGS, CliResult, run_cli
from .fakeserver import (
    CLIENT_ID,
    CLIENT_SECRET,
    MODEL,
    PASSWORD,
    TINY_QA,
    TLS_NAME,
    USERNAME,
    FakeBackend,
    dataset_answers,
    half_wrong,
    make_tls,
    running,
)

pytest.importorskip("inspect_ai", reason=EXTRA_REASON)
pytestmark = INSPECT_WARNINGS


def run(origin: str, out: Path, *extra: str | Path, dataset: Path = TINY_QA) -> CliResult:
    return run_cli(
        "run",
        "--dataset",
        dataset,
        "--base-url",
        f"{origin}/v1",
        "--model",
        MODEL,
        "--out",
        out,
        "--no-textfile",
        "--no-probe-local",
        "--retries",
        "0",
        "--bootstrap-samples",
        "1000",
        *extra,
    )


def only_result(directory: Path) -> tuple[Path, dict[str, Any]]:
    (path,) = sorted(directory.glob("*.json"))
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_good_scores_every_item_and_records_the_run(tmp_path: Path) -> None:
    backend = FakeBackend(dataset_answers())
    runtime = tmp_path / "runtime.json"
    runtime.write_text(
        json.dumps({"cuda_version": "12.8", "driver_version": "570.86.15", "node": "gpu1"})
    )
    with running(backend) as origin:
        result = run(
            origin,
            tmp_path / "results",
            "--seed",
            "7",
            "--max-tokens",
            "16",
            "--runtime",
            runtime,
            "--model-digest",
            "sha256:" + "ab" * 32,
        )
    assert result.code == 0, result.err
    assert "20/20 correct (accuracy 1.000)" in result.out
    assert "gate: none" in result.out
    path, document = only_result(tmp_path / "results")
    assert f"result: {path}" in result.out
    assert document["schema"] == "sovereign-eval-result/1"
    assert document["score"]["correct"] == 20 and document["score"]["accuracy"] == 1.0
    assert document["dataset"]["name"] == "tiny_qa"
    assert (
        document["dataset"]["sha256"]
        == __import__("hashlib").sha256(TINY_QA.read_bytes()).hexdigest()
    )
    assert document["model"] == {
        "name": MODEL,
        "digest": "sha256:" + "ab" * 32,
        "digest_source": "command line",
        "served": {"id": MODEL, "root": f"/models/{MODEL}", "owned_by": "vllm"},
    }
    assert document["runtime"]["vllm_version"] == "0.32.0"  # the backend's GET /version
    assert document["runtime"]["cuda_version"] == "12.8"
    assert document["runtime"]["driver_version"] == "570.86.15"
    assert document["runtime"]["torch_version"] is None
    assert document["runtime"]["sources"]["vllm_version"] == "backend GET /version"
    assert document["generation"]["seed"] == 7 and document["generation"]["temperature"] == 0.0
    assert document["tools"]["inspect_ai"] == version("inspect-ai")
    assert document["endpoint"]["auth"] == "none"
    assert document["started_at"] <= document["finished_at"]
    first = document["items"][0]
    assert first["id"] == "sec-01" and first["score"] == 1 and first["output"] == " 90 days"
    # every request: the raw prompt, temperature 0, the seed, max_tokens, one choice
    assert len(backend.requests) == 20
    assert {(r["temperature"], r["seed"], r["max_tokens"], r["n"]) for r in backend.requests} == {
        (0.0, 7, 16, 1)
    }
    assert {r["prompt"] for r in backend.requests} == set(dataset_answers())
    assert all("authorization" not in h for h in backend.headers)


def test_gate_passes_good_against_good_and_fails_worse_against_good(tmp_path: Path) -> None:
    textfile = tmp_path / "prom" / "sovereign_eval.prom"
    with running(FakeBackend(dataset_answers())) as origin:
        baseline_run = run(origin, tmp_path / "baseline")
        baseline, _ = only_result(tmp_path / "baseline")
        good = run(origin, tmp_path / "good", "--baseline", baseline)
    with running(FakeBackend(half_wrong(dataset_answers()))) as origin:
        worse = run(
            origin,
            tmp_path / "worse",
            "--baseline",
            baseline,
            "--textfile",
            textfile,
        )
    assert baseline_run.code == 0, baseline_run.err
    assert good.code == 0, good.err
    assert "gate: PASS" in good.out
    assert worse.code == 1, worse.err
    assert "10/20 correct (accuracy 0.500)" in worse.out
    assert "gate: FAIL (accuracy FAILED: -0.500 vs -0.05 allowed)" in worse.out
    _, document = only_result(tmp_path / "worse")
    comparison = document["comparison"]
    assert comparison["baseline_accuracy"] == 1.0 and comparison["candidate_accuracy"] == 0.5
    assert len(comparison["lost"]) == 10 and comparison["gained"] == []
    assert comparison["ci"]["high"] < 0 and comparison["ci"]["excludes_zero"]
    assert document["gate"]["passed"] is False
    text = textfile.read_text()
    assert 'sovereign_eval_gate_passed{dataset="tiny_qa",model="sovereign-tiny"} 0.0' in text
    assert 'sovereign_eval_baseline_accuracy{dataset="tiny_qa",model="sovereign-tiny"} 1.0' in text

    # the same verdicts from the result files alone
    _, good_doc = only_result(tmp_path / "good")
    worse_file, _ = only_result(tmp_path / "worse")
    good_file, _ = only_result(tmp_path / "good")
    assert good_doc["gate"]["passed"] is True
    assert run_cli("compare", good_file, baseline).code == 0
    compared = run_cli("compare", worse_file, baseline, "--json")
    assert compared.code == 1
    assert json.loads(compared.out)["gate"]["checks"][0]["difference"] == -0.5
    # a looser threshold lets the same drop through
    assert run_cli("compare", worse_file, baseline, "--threshold", "0.5").code == 0


def test_a_baseline_of_another_dataset_is_refused_before_any_question(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_bytes(TINY_QA.read_bytes().replace(b"90 days", b"91 days"))
    backend = FakeBackend(dataset_answers())
    with running(backend) as origin:
        assert run(origin, tmp_path / "other-results", dataset=other).code == 0
        baseline, _ = only_result(tmp_path / "other-results")
        asked = len(backend.requests)
        refused = run(origin, tmp_path / "results", "--baseline", baseline)
    assert refused.code == 2
    assert "refusing the baseline" in refused.err and "same dataset bytes" in refused.err
    assert len(backend.requests) == asked, "no question may be sent"
    assert not (tmp_path / "results").exists(), "nothing may be written"


def test_repeat_reports_the_reproducibility_figure_and_gates_on_it(tmp_path: Path) -> None:
    answers = dataset_answers()
    prompts = list(answers)
    # two items answer differently the second time: 18/20 identical = 0.90, the bar
    backend = FakeBackend(answers, flaky={p: [" something else"] for p in prompts[:2]})
    with running(backend) as origin:
        edge = run(origin, tmp_path / "edge", "--repeat", "2")
    assert edge.code == 0, edge.err
    assert "reproducibility: 18/20 items identical in 2 runs" in edge.out
    _, document = only_result(tmp_path / "edge")
    assert document["reproducibility"]["fraction"] == 0.9
    assert document["gate"] == {
        "passed": True,
        "checks": [
            {
                "name": "reproducibility",
                "rule": "fail when the fraction of items identical in every run "
                "< min_reproducibility",
                "runs": 2,
                "fraction": 0.9,
                "min_reproducibility": 0.9,
                "passed": True,
            }
        ],
    }
    flags = {item["id"]: item["identical_across_runs"] for item in document["items"]}
    assert sum(not flag for flag in flags.values()) == 2
    assert len(backend.requests) == 40

    backend = FakeBackend(answers, flaky={p: [" something else"] for p in prompts[:3]})
    with running(backend) as origin:
        below = run(origin, tmp_path / "below", "--repeat", "2")
    assert below.code == 1
    assert "reproducibility FAILED: 0.850 vs 0.9 asked" in below.out


def test_password_grant_over_tls_with_the_site_ca(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    (tmp_path / "secret").write_text(CLIENT_SECRET + "\n")
    (tmp_path / "password").write_text(PASSWORD + "\n")
    backend = FakeBackend(dataset_answers(), require_token=True, version=None)
    with running(backend, tls) as address:
        # the lab's way: host names only the certificates know, reached by address
        port = address.rsplit(":", 1)[1]
        origin = f"https://{TLS_NAME}:{port}"
        resolve = ("--resolve", f"{TLS_NAME}:{port}:127.0.0.1")
        auth = (
            *resolve,
            "--token-url",
            f"{origin}/oauth2/token",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            tmp_path / "secret",
            "--username",
            USERNAME,
            "--password-file",
            tmp_path / "password",
        )
        untrusted = run(origin, tmp_path / "untrusted", *auth)
        result = run(origin, tmp_path / "results", *auth, "--cacert", tls.ca)
    assert untrusted.code == 3
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.err
    assert result.code == 0, result.err
    assert {h["host"] for h in backend.headers} == {f"{TLS_NAME}:{port}"}
    assert "20/20 correct" in result.out
    assert {h["authorization"] for h in backend.headers} <= {"Bearer tok-1", "Bearer tok-2"}
    assert backend.grants[-1] == {
        "grant_type": "password",
        "username": USERNAME,
        "scope": "openid",
        "client": CLIENT_ID,
    }
    _, document = only_result(tmp_path / "results")
    assert document["endpoint"]["auth"] == "password"
    assert document["endpoint"]["resolve"] == [f"{TLS_NAME}:{port}:127.0.0.1"]
    assert document["runtime"]["vllm_version"] is None  # the gateway does not tell
    raw = json.dumps(document)
    assert PASSWORD not in raw and CLIENT_SECRET not in raw and "tok-" not in raw


def test_client_credentials_and_a_refused_secret(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(CLIENT_SECRET)
    (tmp_path / "wrong").write_text("not the secret")
    backend = FakeBackend(dataset_answers(), require_token=True)
    with running(backend) as origin:
        options = ("--token-url", f"{origin}/oauth2/token", "--client-id", CLIENT_ID)
        good = run(origin, tmp_path / "good", *options, "--client-secret-file", tmp_path / "secret")
        bad = run(origin, tmp_path / "bad", *options, "--client-secret-file", tmp_path / "wrong")
    assert good.code == 0, good.err
    assert backend.grants[0]["grant_type"] == "client_credentials"
    assert bad.code == 3
    assert "refused the client_credentials grant for sovereign-eval: HTTP 401" in bad.err
    assert "invalid_client" in bad.err
    assert not (tmp_path / "bad").exists()


def test_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-99\n")
    (tmp_path / "stale").write_text("expired-token\n")
    backend = FakeBackend(dataset_answers(), require_token=True)
    with running(backend) as origin:
        good = run(origin, tmp_path / "good", "--token-file", tmp_path / "token")
        refused = run(origin, tmp_path / "refused", "--token-file", tmp_path / "stale")
    assert good.code == 0, good.err
    assert {h["authorization"] for h in backend.headers} == {"Bearer tok-99"}
    assert refused.code == 3
    assert "HTTP 401: invalid token (check the token options)" in refused.err


def test_a_model_version_is_asked_for_on_every_request_and_recorded(tmp_path: Path) -> None:
    backend = FakeBackend(dataset_answers())
    with running(backend) as origin:
        result = run(origin, tmp_path / "results", "--model-version", "tiny-good2")
    assert result.code == 0, result.err
    assert backend.headers
    assert {h.get("x-sovereign-model-version") for h in backend.headers} == {"tiny-good2"}
    record = json.loads(next((tmp_path / "results").rglob("*.json")).read_text())
    assert record["endpoint"]["model_version"] == "tiny-good2"


def test_a_model_that_is_not_served_is_named(tmp_path: Path) -> None:
    backend = FakeBackend(dataset_answers(), models=["other-model"])
    with running(backend) as origin:
        result = run(origin, tmp_path / "results")
    assert result.code == 2
    assert "does not serve model 'sovereign-tiny'" in result.err and "other-model" in result.err
    assert backend.requests == []


def test_a_failing_backend_fails_the_run_and_writes_nothing(tmp_path: Path) -> None:
    with running(FakeBackend(dataset_answers(), status=500)) as origin:
        result = run(origin, tmp_path / "results")
    assert result.code == 3
    assert "HTTP 500: backend on fire" in result.err
    assert not (tmp_path / "results").exists()


def test_an_oversized_answer_is_refused(tmp_path: Path) -> None:
    with running(FakeBackend(dataset_answers(), pad_bytes=8192)) as origin:
        result = run(origin, tmp_path / "results", "--max-response-bytes", "4096")
    assert result.code == 3
    assert "larger than 4096 bytes" in result.err


def test_a_slow_backend_times_out(tmp_path: Path) -> None:
    with running(FakeBackend(dataset_answers(), delay_s=0.5)) as origin:
        result = run(origin, tmp_path / "results", "--timeout", "0.1")
    assert result.code == 3
    assert "ReadTimeout" in result.err


def test_stored_outputs_are_bounded(tmp_path: Path) -> None:
    answers = {prompt: " " + "y" * 500 for prompt in dataset_answers()}
    with running(FakeBackend(answers)) as origin:
        result = run(origin, tmp_path / "results", "--max-output-chars", "10")
    assert result.code == 0, result.err
    _, document = only_result(tmp_path / "results")
    item = document["items"][0]
    assert item["output"] == " " + "y" * 9
    assert item["output_truncated"] is True and item["output_chars"] == 501
    assert item["score"] == 0


def test_local_inputs_are_checked_before_any_question(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    (tmp_path / "runtime.json").write_text('{"cuda": "12.8"}')
    backend = FakeBackend(dataset_answers())
    with running(backend) as origin:
        textfile = run(
            origin, tmp_path / "results", "--textfile", tmp_path / "not-a-directory" / "x.prom"
        )
        out = run(origin, tmp_path / "not-a-directory" / "results")
        runtime = run(origin, tmp_path / "results", "--runtime", tmp_path / "runtime.json")
    assert textfile.code == out.code == runtime.code == 2
    assert "--textfile" in textfile.err and "is not a writable directory" in textfile.err
    assert "--out" in out.err and "is not a writable directory" in out.err
    assert "unknown key 'cuda'" in runtime.err
    assert backend.requests == [] and backend.grants == []
    assert not (tmp_path / "results").exists()


def test_metrics_that_cannot_be_written_name_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sovereign.eval import metrics
    from sovereign.eval.errors import WriteError

    def refuse(directory: Path) -> None:
        raise WriteError(f"{directory}: cannot open the textfile directory: Permission denied")

    monkeypatch.setattr(metrics, "_locked", refuse)
    with running(FakeBackend(dataset_answers())) as origin:
        result = run(origin, tmp_path / "results", "--textfile", tmp_path / "x.prom")
    assert result.code == 3
    path, _ = only_result(tmp_path / "results")
    assert f"the result is in {path}, but the metrics are not" in result.err


def test_without_the_extra_the_missing_module_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    import sovereign.eval

    for module in ("runner", "compare"):  # imported afresh, without numpy
        monkeypatch.delitem(sys.modules, f"sovereign.eval.{module}", raising=False)
        monkeypatch.delattr(sovereign.eval, module, raising=False)
    monkeypatch.setitem(sys.modules, "numpy", None)
    result = run_cli("compare", tmp_path / "a.json", tmp_path / "b.json")
    assert result.code == 2
    assert result.err == (
        "sovereign eval: error: needs the eval extra (module numpy is missing): "
        "pip install 'sovereign[eval]'\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("run",), "the following arguments are required: --dataset, --base-url, --model"),
        (("run", "--dataset", TINY_QA, "--base-url", "ftp://x/v1", "--model", "m"), "not an http"),
        (
            (
                "run",
                "--dataset",
                TINY_QA,
                "--base-url",
                "http://gw.example/v1",
                "--model",
                "m",
                "--token-file",
                "/dev/null",
            ),
            "would carry a secret in clear text",
        ),
        (
            (
                "run",
                "--dataset",
                TINY_QA,
                "--base-url",
                "https://gw.example/v1",
                "--model",
                "m",
                "--token-url",
                "https://idp.example/token",
            ),
            "--token-url needs --client-id and --client-secret-file",
        ),
        (
            (
                "run",
                "--dataset",
                TINY_QA,
                "--base-url",
                "https://gw.example/v1",
                "--model",
                "m",
                "--username",
                "bob",
            ),
            "--username need(s) --token-url",
        ),
        (
            (
                "run",
                "--dataset",
                TINY_QA,
                "--base-url",
                "https://gw.example/v1",
                "--model",
                "m",
                "--threshold",
                "5",
            ),
            "5 is outside 0..1 (0.05 is 5 points)",
        ),
        (
            (
                "run",
                "--dataset",
                "/nonexistent.jsonl",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--model",
                "m",
            ),
            "cannot read the dataset",
        ),
        (
            (
                "run",
                "--dataset",
                TINY_QA,
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--model",
                "m",
                "--model-version",
                "bad version\n",
            ),
            "--model-version must be a release name",
        ),
        (("compare", TINY_QA, TINY_QA), "not JSON"),
    ],
)
def test_usage_errors_exit_2(argv: tuple[str | Path, ...], message: str) -> None:
    result = run_cli(*argv)
    assert result.code == 2
    assert message in result.err
    assert result.err.startswith("sovereign eval: error:")


def test_validate(tmp_path: Path) -> None:
    ok = run_cli("validate", TINY_QA)
    assert ok.code == 0
    assert "OK: " in ok.out and "20 items in 5 categories (exact 20)" in ok.out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    result = run_cli("validate", bad)
    assert result.code == 2
    assert f"{bad}:1: missing field 'category'" in result.err


def test_the_top_level_cli_dispatches_eval(capsys: pytest.CaptureFixture[str]) -> None:
    from sovereign.cli import main

    assert main(["eval", "validate", str(TINY_QA)]) == 0
    assert "OK: " in capsys.readouterr().out
