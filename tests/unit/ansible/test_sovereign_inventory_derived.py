"""The filters derived from the serving manifest and the release table,
called the way Ansible calls them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from tests.unit.ansible.plugins import load_filter
from tests.unit.inventory.conftest import TABLE

KEY = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"


def test_filters_derive_inputs_and_name_the_bad_key(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/custodians.pub").write_text(KEY)
    (tmp_path / "runtimes").mkdir()
    (tmp_path / "runtimes/cu128.txt").write_text("")
    root = str(tmp_path)
    filters = load_filter("sovereign_inventory.py").FilterModule().filters()
    manifest: dict[str, Any] = {
        "deployments": [
            {
                "name": "tiny",
                "release": "tiny-1",
                "runtime": "cu128",
                "hardware_profile": "cpu-lab",
                "tiers": ["general"],
                "port": 8000,
            }
        ],
    }
    assert filters["sovereign_serving_units"](manifest, TABLE, root) == ["vllm-tiny.service"]
    assert filters["sovereign_serving_runtime"](manifest, TABLE, root)["cuda_version"] == "12.8"
    models = filters["sovereign_serving_models"](manifest, TABLE, root, "lab-registry:5000")
    assert models[0]["repository"] == "lab-registry:5000/models/tiny"
    assert filters["sovereign_serving_instances"](manifest, TABLE, root)[0]["port"] == 8000
    gateway = filters["sovereign_gateway_models"](
        {"n1": {"sovereign_serving": manifest}}, ["n1"], TABLE, root
    )
    assert gateway["sovereign-tiny"]["versions"][0]["backends"] == {"general": ["http://n1:8000"]}
    catalog = filters["sovereign_catalog"]([{"release": "tiny-1", "path": root}], TABLE, root)
    assert catalog[0]["revision"] == "1"
    manifest["deployments"][0]["release"] = "tiny-latest"
    with pytest.raises(AnsibleFilterError, match=r"sovereign_serving_instances: .*release"):
        filters["sovereign_serving_instances"](manifest, TABLE, root)
