"""``sovereign eval``: run an evaluation dataset against the platform, compare, gate.

Exit codes: 0 the run finished and its gate passed (or it had none), 1 the gate
failed (accuracy dropped by more than the threshold, or the runs did not
reproduce), 2 bad arguments or input (dataset, baseline, runtime file, secret
file, a model that is not served), 3 the run could not measure (gateway,
backend or token endpoint failed). Errors are one line each on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from sovereign.eval.errors import EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE, EvalError, UsageError

PROG = "sovereign eval"
EPILOG = (
    "exit codes: 0 pass, 1 regression (gate failed), 2 bad arguments or input, "
    "3 the run failed (gateway, backend, token endpoint); see docs/eval.md"
)
MAX_TOKENS_LIMIT = 32_768
MAX_REPEAT = 20
MAX_SEED = 2**32 - 1
# What the eval extra installs; service hosts have the package without them.
EXTRA_MODULES = frozenset({"inspect_ai", "jsonschema", "numpy"})


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1 (0.05 is 5 points)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..3600 seconds")
    return value


def _gate_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gate")
    group.add_argument(
        "--threshold",
        type=_fraction,
        help="largest accepted drop in accuracy, absolute (0.05 = 5 points); default: the "
        "dataset's <stem>.gate.yml, else 0.05",
    )
    group.add_argument(
        "--min-reproducibility",
        type=_fraction,
        help="with --repeat: smallest accepted fraction of items identical in every run; "
        "default: the dataset's <stem>.gate.yml, else 0.90",
    )
    group.add_argument(
        "--bootstrap-samples",
        type=_bounded_int(100, 1_000_000),
        default=10_000,
        help="resamples of the paired bootstrap confidence interval (default 10000)",
    )
    group.add_argument(
        "--bootstrap-seed",
        type=_bounded_int(0, MAX_SEED),
        default=0,
        help="seed of the bootstrap's random numbers (default 0)",
    )
    group.add_argument(
        "--confidence", type=float, default=0.95, help="confidence level (default 0.95)"
    )


def build_parser() -> argparse.ArgumentParser:
    from sovereign.eval.connection import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_S
    from sovereign.eval.metrics import DEFAULT_TEXTFILE
    from sovereign.eval.results import DEFAULT_MAX_OUTPUT_CHARS

    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0], epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    validate = commands.add_parser("validate", help="check datasets without running them")
    validate.add_argument("datasets", nargs="+", type=Path, metavar="DATASET")

    run = commands.add_parser(
        "run", help="ask a model every item of a dataset, score, compare with a baseline"
    )
    run.add_argument("--dataset", type=Path, required=True, help="the JSONL dataset")
    run.add_argument(
        "--base-url",
        required=True,
        help="OpenAI-compatible API root: https://<gateway>/v1 or http://<node>:<port>/v1",
    )
    run.add_argument("--model", required=True, help="the served model name (also the label)")
    run.add_argument(
        "--model-version",
        metavar="RELEASE",
        help="through the gateway: ask this version of the model (X-Sovereign-Model-Version; "
        "the account must be in the gateway's routing.version_pin_groups)",
    )
    auth = run.add_argument_group(
        "authentication (none: a backend reached directly; secrets only from files)"
    )
    auth.add_argument("--token-file", type=Path, help="file holding a bearer token")
    auth.add_argument("--token-url", help="OAuth2 token endpoint of the identity provider")
    auth.add_argument("--client-id", help="OAuth2 client id (HTTP basic client authentication)")
    auth.add_argument("--client-secret-file", type=Path, help="file holding the client secret")
    auth.add_argument("--username", help="account for the password grant (else client credentials)")
    auth.add_argument("--password-file", type=Path, help="file holding the account's password")
    auth.add_argument("--scope", default="openid", help="scope to ask for (default openid)")
    auth.add_argument("--cacert", type=Path, help="CA bundle to verify TLS (default: system's)")
    auth.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDRESS",
        help="reach HOST:PORT at ADDRESS, keeping the name for TLS (as curl --resolve)",
    )
    gen = run.add_argument_group("generation")
    gen.add_argument("--seed", type=_bounded_int(0, MAX_SEED), default=0, help="(default 0)")
    gen.add_argument(
        "--max-tokens", type=_bounded_int(1, MAX_TOKENS_LIMIT), default=64, help="(default 64)"
    )
    gen.add_argument(
        "--repeat",
        type=_bounded_int(1, MAX_REPEAT),
        default=1,
        help="ask every item N times and report the fraction answered identically (default 1)",
    )
    gen.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, help="seconds per request"
    )
    gen.add_argument(
        "--retries", type=_bounded_int(0, 10), default=3, help="retries of a failed request"
    )
    gen.add_argument(
        "--concurrency", type=_bounded_int(1, 64), default=4, help="requests in flight"
    )
    gen.add_argument(
        "--max-response-bytes",
        type=_bounded_int(1024, 64 * 1024 * 1024),
        default=DEFAULT_MAX_RESPONSE_BYTES,
        help="refuse an answer larger than this (default 256 KiB)",
    )
    record = run.add_argument_group("record")
    record.add_argument(
        "--out",
        type=Path,
        default=Path("/var/lib/sovereign/eval/results"),
        help="results directory (default /var/lib/sovereign/eval/results)",
    )
    record.add_argument(
        "--max-output-chars",
        type=_bounded_int(0, 1_000_000),
        default=DEFAULT_MAX_OUTPUT_CHARS,
        help="characters of each output kept in the result (default 2000)",
    )
    record.add_argument("--model-digest", help="digest of the served model, when not in --runtime")
    record.add_argument(
        "--runtime", type=Path, help="JSON gathered from the serving node (docs/eval.md)"
    )
    record.add_argument(
        "--no-probe-local",
        dest="probe_local",
        action="store_false",
        help="do not read nvidia-smi or the installed vllm on this host",
    )
    record.add_argument(
        "--textfile",
        type=Path,
        default=DEFAULT_TEXTFILE,
        help=f"node_exporter textfile to update (default {DEFAULT_TEXTFILE})",
    )
    record.add_argument(
        "--no-textfile", dest="textfile", action="store_const", const=None, help="write no metrics"
    )
    record.add_argument(
        "--inspect-log-dir", type=Path, help="keep Inspect AI's own log here (default: discarded)"
    )
    run.add_argument("--baseline", type=Path, help="result file of the baseline run")
    _gate_options(run)

    comp = commands.add_parser("compare", help="compare two result files (paired) and gate")
    comp.add_argument("candidate", type=Path, metavar="CANDIDATE.json")
    comp.add_argument("baseline", type=Path, metavar="BASELINE.json")
    comp.add_argument(
        "--textfile", type=Path, help="node_exporter textfile to update (default: none)"
    )
    comp.add_argument("--json", action="store_true", help="print the comparison as JSON")
    _gate_options(comp)
    return parser


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    from sovereign.eval.dataset import load_dataset

    for path in args.datasets:
        dataset = load_dataset(path)
        scorers = ", ".join(f"{name} {count}" for name, count in sorted(dataset.scorers.items()))
        out.write(
            f"OK: {path}: {len(dataset.items)} items in {len(dataset.categories)} categories "
            f"({scorers}); sha256 {dataset.sha256}; gate: threshold "
            f"{dataset.gate.regression_threshold:g}, reproducibility "
            f"{dataset.gate.min_reproducibility:g} ({dataset.gate.source})\n"
        )
    return EXIT_PASS


def _bootstrap(args: argparse.Namespace) -> Any:
    from sovereign.eval.compare import BootstrapSettings

    return BootstrapSettings(args.bootstrap_samples, args.bootstrap_seed, args.confidence)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sovereign.eval.connection import Connection, TokenSettings, parse_resolve
    from sovereign.eval.dataset import load_dataset
    from sovereign.eval.inspect_run import Generation
    from sovereign.eval.results import load_result
    from sovereign.eval.runner import RunRequest, execute

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is not a directory")
    connection = Connection(
        base_url=args.base_url,
        tokens=TokenSettings(
            token_file=args.token_file,
            token_url=args.token_url,
            client_id=args.client_id,
            client_secret_file=args.client_secret_file,
            username=args.username,
            password_file=args.password_file,
            scope=args.scope if args.token_url else None,
        ),
        cacert=args.cacert,
        timeout_s=args.timeout,
        max_response_bytes=args.max_response_bytes,
        resolve=tuple(parse_resolve(text) for text in args.resolve),
        model_version=args.model_version,
    )
    request = RunRequest(
        dataset=load_dataset(args.dataset),
        connection=connection,
        model=args.model,
        generation=Generation(
            max_tokens=args.max_tokens,
            seed=args.seed,
            retries=args.retries,
            concurrency=args.concurrency,
        ),
        repeat=args.repeat,
        out_dir=args.out,
        baseline=load_result(args.baseline) if args.baseline else None,
        threshold=args.threshold,
        min_reproducibility=args.min_reproducibility,
        bootstrap=_bootstrap(args),
        model_digest=args.model_digest,
        runtime_file=args.runtime,
        probe_local=args.probe_local,
        textfile=args.textfile,
        max_output_chars=args.max_output_chars,
        inspect_log_dir=args.inspect_log_dir,
    )
    report = execute(request)
    document = report.document
    _summary(out, document)
    out.write(f"result: {report.path}\n")
    for warning in report.warnings:
        err.write(f"{PROG}: warning: {warning}\n")
    return EXIT_REGRESSION if report.gate_failed else EXIT_PASS


def _summary(out: TextIO, document: dict[str, Any]) -> None:
    score = document["score"]
    generation = document["generation"]
    out.write(
        f"{document['dataset']['name']} on {document['model']['name']}: "
        f"{score['correct']}/{score['items']} correct (accuracy {score['accuracy']:.3f}); "
        f"seed {generation['seed']}, {generation['repeat']} run(s)\n"
    )
    if document["comparison"] is not None:
        _comparison_lines(out, document["comparison"])
    reproducibility = document["reproducibility"]
    if reproducibility is not None:
        out.write(
            f"reproducibility: {reproducibility['identical_items']}/{reproducibility['items']} "
            f"items identical in {reproducibility['runs']} runs "
            f"({reproducibility['fraction']:.3f}, at least "
            f"{reproducibility['min_required']:.3f} asked)\n"
        )
    _gate_line(out, document["gate"])


def _comparison_lines(out: TextIO, comparison: dict[str, Any]) -> None:
    ci = comparison["ci"]
    out.write(
        f"baseline {comparison['baseline']['path']}: {comparison['baseline_correct']}/"
        f"{comparison['items']} (accuracy {comparison['baseline_accuracy']:.3f}); difference "
        f"{comparison['difference']:+.3f}, {ci['level']:.0%} CI [{ci['low']:+.3f}, "
        f"{ci['high']:+.3f}] (paired bootstrap, {ci['bootstrap_samples']} resamples); "
        f"{len(comparison['lost'])} item(s) lost, {len(comparison['gained'])} gained\n"
    )


def _gate_line(out: TextIO, gate: dict[str, Any] | None) -> None:
    if gate is None:
        out.write("gate: none (no --baseline, no --repeat)\n")
        return
    parts = []
    for check in gate["checks"]:
        verdict = "ok" if check["passed"] else "FAILED"
        if check["name"] == "accuracy":
            parts.append(
                f"accuracy {verdict}: {check['difference']:+.3f} vs -"
                f"{check['regression_threshold']:g} allowed"
            )
        else:
            parts.append(
                f"reproducibility {verdict}: {check['fraction']:.3f} vs "
                f"{check['min_reproducibility']:g} asked"
            )
    out.write(f"gate: {'PASS' if gate['passed'] else 'FAIL'} ({'; '.join(parts)})\n")


def _compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sovereign.eval.results import load_result
    from sovereign.eval.runner import compare_files

    candidate, baseline = load_result(args.candidate), load_result(args.baseline)
    report = compare_files(
        candidate,
        baseline,
        threshold=args.threshold,
        min_reproducibility=args.min_reproducibility,
        bootstrap=_bootstrap(args),
        textfile=args.textfile,
    )
    if args.json:
        out.write(json.dumps({"comparison": report.comparison, "gate": report.gate}, indent=2))
        out.write("\n")
    else:
        out.write(
            f"{candidate.dataset_name}: candidate {candidate.path} ({candidate.model}) "
            f"{candidate.correct}/{len(candidate.scores)}\n"
        )
        _comparison_lines(out, report.comparison)
        _gate_line(out, report.gate)
    for warning in report.warnings:
        err.write(f"{PROG}: warning: {warning}\n")
    return EXIT_PASS if report.gate["passed"] else EXIT_REGRESSION


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command == "validate":
            return _validate(args, out)
        if args.command == "compare":
            return _compare(args, out, err)
        return _run(args, out, err)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except EvalError as exc:
        first, *rest = str(exc).splitlines() or [type(exc).__name__]
        err.write(f"{PROG}: error: {first}\n")
        for line in rest:
            err.write(f"{PROG}:   {line}\n")
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in EXTRA_MODULES:
            raise
        err.write(
            f"{PROG}: error: needs the eval extra (module {exc.name} is missing): "
            "pip install 'sovereign[eval]'\n"
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
