"""``sovereign``: the command-line entry point; one subcommand per area."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def _model(argv: Sequence[str]) -> int:
    from sovereign.model.cli import main

    return main(argv)


def _gateway(argv: Sequence[str]) -> int:
    from sovereign.gateway.cli import main

    return main(argv)


def _audit(argv: Sequence[str]) -> int:
    from sovereign.audit.cli import main

    return main(argv)


def _eval(argv: Sequence[str]) -> int:
    from sovereign.eval.cli import main

    return main(argv)


def _retrieval(argv: Sequence[str]) -> int:
    from sovereign.retrieval.cli import main

    return main(argv)


def _gpu(argv: Sequence[str]) -> int:
    from sovereign.gpu.cli import main

    return main(argv)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "model": (_model, "sign, publish, pull and verify model artifacts"),
    "gateway": (_gateway, "serve the inference gateway, or check its configuration"),
    "audit": (_audit, "verify and prune the tamper-evident audit log"),
    "eval": (_eval, "run an evaluation dataset, compare with a baseline, gate"),
    "gpu": (_gpu, "judge a GPU node's nvidia-smi, NVLink, DCGM and Xid outputs"),
    "retrieval": (_retrieval, "ingest a corpus, serve the retrieval API, read its logs"),
}

USAGE = "usage: sovereign COMMAND [ARGS...]\n\ncommands:\n" + "".join(
    f"  {name:<8} {summary}\n" for name, (_, summary) in COMMANDS.items()
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        sys.stderr.write(f"sovereign: error: unknown command {args[0]!r}\n{USAGE}")
        return 2
    return command[0](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
