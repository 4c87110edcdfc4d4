"""The serving filters, called the way Ansible calls them."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from tests.unit.ansible.plugins import load_filter

KEY = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"


def test_filters_derive_inputs_and_name_the_bad_key() -> None:
    filters = load_filter("sovereign_serving.py").FilterModule().filters()
    manifest: dict[str, Any] = {
        "public_key": KEY,
        "deployments": [
            {
                "name": "tiny",
                "repository": "lab-registry:5000/models/tiny",
                "digest": "sha256:" + "0" * 64,
                "vllm_version": "0.32.0",
                "hardware_profile": "cpu-lab",
                "port": 8000,
            }
        ],
    }
    assert filters["sovereign_serving_units"](manifest) == ["vllm-tiny.service"]
    assert filters["sovereign_serving_pin"](manifest, "cuda_version") == ""
    assert filters["sovereign_serving_models"](manifest)[0]["name"] == "tiny"
    assert filters["sovereign_serving_instances"](manifest)[0]["port"] == 8000
    manifest["deployments"][0]["digest"] = "latest"
    with pytest.raises(AnsibleFilterError, match=r"sovereign_serving_instances: .*digest"):
        filters["sovereign_serving_instances"](manifest)
