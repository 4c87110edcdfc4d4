"""``sovereign gateway check-config`` and the top-level dispatch."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from sovereign.cli import main as sovereign_main
from sovereign.gateway.cli import main
from tests.unit.gateway.conftest import BASE_CONFIG


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "gateway.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["check-config", str(_write(tmp_path, BASE_CONFIG))], stdout=out) == 0
    assert out.getvalue().startswith("OK: ") and "3 models, 4 rules" in out.getvalue()


def test_check_config_names_every_problem_and_exits_2(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["routing"]["rules"][1]["tier"] = "gold"
    data["models"]["tiny"]["versions"][0]["weight"] = 90
    err = io.StringIO()
    assert main(["check-config", str(_write(tmp_path, data))], stderr=err) == 2
    text = err.getvalue()
    assert "routing.rules[1].tier: unknown tier 'gold'" in text
    assert "models.tiny.versions: weights sum to 95, not 100" in text
    assert "Traceback" not in text


def test_bad_arguments_exit_2() -> None:
    err = io.StringIO()
    assert main(["serve"], stderr=err) == 2
    assert "--config" in err.getvalue()


def test_serve_with_a_bad_config_exits_2_before_listening(tmp_path: Path) -> None:
    err = io.StringIO()
    assert main(["serve", "--config", str(tmp_path / "none.yml")], stderr=err) == 2
    assert "cannot read" in err.getvalue()


def test_sovereign_gateway_is_dispatched(tmp_path: Path) -> None:
    assert sovereign_main(["gateway", "check-config", str(_write(tmp_path, BASE_CONFIG))]) == 0


def test_check_config_says_whether_the_running_gateway_reloads_or_restarts(
    tmp_path: Path,
) -> None:
    running = tmp_path / "running.yml"
    running.write_text(yaml.safe_dump(BASE_CONFIG))

    def verdict(data: object) -> str:
        out = io.StringIO()
        path = _write(tmp_path, data)
        assert main(["check-config", str(path), "--running", str(running)], stdout=out) == 0
        return out.getvalue().splitlines()[-1]

    policy = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    policy["models"]["tiny"]["versions"][0]["backends"]["general"].append("http://new:8000")
    assert verdict(policy) == "reload"
    listener = dict(BASE_CONFIG, listen={"host": "127.0.0.1", "port": 9999})
    assert verdict(listener) == "restart: listen"
    drained = dict(BASE_CONFIG, drain_file=str(tmp_path / "drain.yml"))
    assert verdict(drained) == "restart: drain_file"
    running.write_text("not: [valid")
    assert verdict(BASE_CONFIG) == "restart: the running configuration cannot be read"


def test_set_models_replaces_the_table_validated_and_atomically(tmp_path: Path) -> None:
    import json

    path = tmp_path / "gateway.yml"
    path.write_text("# managed by Ansible\n" + yaml.safe_dump(BASE_CONFIG, indent=2))
    path.chmod(0o640)
    models = yaml.safe_load(yaml.safe_dump(BASE_CONFIG["models"]))
    models["tiny"]["versions"][0]["backends"]["general"] = ["http://gpu2:8000"]
    table = tmp_path / "models.json"
    table.write_text(json.dumps(models))
    out = io.StringIO()
    assert main(["set-models", str(path), str(table)], stdout=out) == 0
    assert out.getvalue() == "changed\n"
    text = path.read_text()
    assert text.startswith("# managed by Ansible\n")
    assert yaml.safe_load(text)["models"] == models
    assert path.stat().st_mode & 0o777 == 0o640
    out = io.StringIO()
    assert main(["set-models", str(path), str(table)], stdout=out) == 0
    assert out.getvalue() == "unchanged\n"
    # A table the gateway would refuse leaves the file as it was.
    models["tiny"]["versions"][0]["weight"] = 1
    table.write_text(json.dumps(models))
    err = io.StringIO()
    assert main(["set-models", str(path), str(table)], stderr=err) == 2
    assert "weights sum to 6, not 100" in err.getvalue()
    assert path.read_text() == text
