"""The rendered check of the example inventory: playbooks/render_gpu_nodes.yml
run for real on the controller, and what the GPU-node roles would install
and write on its H100 and H200 nodes read back: the driver and fabric
manager at the pinned version (the fabric manager at exactly the driver's),
the platform by DMI product name, APT's pins, and each NIC's RoCE settings
in the QoS script and the network configuration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.playbooks.test_validate import ROOT, render_example, run_validate

H100 = "fra1-gpu01.dc.example.internal"
H200 = "fra1-gpu05.dc.example.internal"
VERSION = "590.48.01"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_example("playbooks/render_gpu_nodes.yml", tmp_path_factory.mktemp("render"))


def plan(rendered: Path, host: str) -> dict[str, Any]:
    stack: dict[str, Any] = json.loads(
        (rendered / host / "gpu_driver.json").read_text(encoding="utf-8")
    )
    return stack


@pytest.mark.parametrize(("host", "platform"), [(H100, "DGXH100"), (H200, "DGXH200")])
def test_driver_and_fabric_manager_at_the_pin(rendered: Path, host: str, platform: str) -> None:
    stack = plan(rendered, host)
    assert stack["platform"] == platform
    assert stack["fabric_manager"] is True
    assert stack["kernel_modules"] == "open"
    versions = {package["name"]: package["version"] for package in stack["packages"]}
    assert versions["nvidia-driver-pinning-590.48.01"] == f"{VERSION}-1"
    assert versions["nvidia-driver-cuda"] == f"{VERSION}-1"
    assert versions["nvidia-kernel-open-dkms"] == f"{VERSION}-1"
    assert "nvidia-kernel-dkms" not in versions
    # From branch 580 the fabric manager's name has no branch; its version is the driver's.
    assert versions["nvidia-fabricmanager"] == f"{VERSION}-1"
    assert versions["libnvidia-nscq"] == f"{VERSION}-1"
    # The runtime release's CUDA (vllm-0.32.0-cu128) and the pinned DCGM.
    assert versions["cuda-libraries-12-8"] == "12.8.*"
    assert versions["datacenter-gpu-manager-4-core"] == "1:4.4.1-1"
    assert versions["datacenter-gpu-manager-4-cuda12"] == "1:4.4.1-1"
    assert stack["services"] == [
        "nvidia-persistenced",
        "nvidia-fabricmanager",
        "nvidia-dcgm",
        "nvidia-dcgm-exporter",
    ]


def test_apt_pins_every_package_and_forbids_other_versions(rendered: Path) -> None:
    preferences = (rendered / H200 / "etc/apt/preferences.d/sovereign-nvidia").read_text(
        encoding="utf-8"
    )
    stanzas = [block for block in preferences.split("\n\n") if "Package:" in block]
    fabric = [block for block in stanzas if "Package: nvidia-fabricmanager\n" in block]
    assert len(fabric) == 2
    assert f"Pin: version {VERSION}-1\nPin-Priority: 1001" in fabric[0]
    assert "Pin: version *\nPin-Priority: -1" in fabric[1]
    sources = (rendered / H200 / "etc/apt/sources.list.d/sovereign-nvidia-cuda.sources").read_text(
        encoding="utf-8"
    )
    assert "URIs: https://mirror.dc.example.internal/nvidia/cuda/repos/debian12/x86_64/" in sources
    assert "Signed-By: /etc/apt/keyrings/sovereign-nvidia-cuda.asc" in sources


@pytest.mark.parametrize(("host", "last"), [(H100, 11), (H200, 15)])
def test_roce_settings_per_nic(rendered: Path, host: str, last: int) -> None:
    nics = json.loads((rendered / host / "roce.json").read_text(encoding="utf-8"))
    assert [nic["name"] for nic in nics] == ["ens1f0np0", "ens2f0np0"]
    assert {(nic["mtu"], nic["priority"], nic["cnp_priority"], nic["tos"]) for nic in nics} == {
        (4200, 3, 6, 106)
    }
    script = (rendered / host / "usr/local/sbin/sovereign-roce-apply").read_text(encoding="utf-8")
    for nic, device in (("ens1f0np0", "mlx5_0"), ("ens2f0np0", "mlx5_1")):
        assert f'want_pfc {nic} "0:off 1:off 2:off 3:on 4:off 5:off 6:off 7:off"' in script
        assert f'want_dscp_prio {nic} "26:3 48:6"' in script
        assert f"want_file /sys/class/net/{nic}/ecn/roce_np/enable/3 1" in script
        assert f"want_file /sys/class/net/{nic}/ecn/roce_np/cnp_802p_prio 6" in script
        assert f"/sys/kernel/config/rdma_cm/{device}/ports/1/default_roce_tos" in script
        assert f"check_gid {device} 1 3" in script
    network = (
        rendered / host / "etc/systemd/network/20-sovereign-roce-ens1f0np0.network"
    ).read_text(encoding="utf-8")
    assert "MTUBytes=4200" in network
    assert f"Address=10.40.1.{last}/24" in network


def test_cpu_nodes_render_nothing(rendered: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "dc"
    shutil.copytree(ROOT / "inventories/example", inventory)
    # Every rendered host is a CUDA serving node of the example inventory.
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text(encoding="utf-8"))
    gpu = hosts["all"]["children"]["gpu_nodes"]["children"]
    expected = {host for group in gpu.values() for host in group["hosts"]}
    assert {path.name for path in rendered.iterdir()} == expected


def test_proprietary_modules_on_blackwell_are_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "dc"
    shutil.copytree(ROOT / "inventories/example", inventory)
    path = inventory / "group_vars/gpu_h200/gpu_driver.yml"
    path.write_text("gpu_driver_product_name: DGXB200 920-23687-2530-000\n", encoding="utf-8")
    releases = yaml.safe_load(
        (ROOT / "playbooks/group_vars/all/releases.yml").read_text(encoding="utf-8")
    )
    profile = releases["sovereign_releases"]["hardware_profiles"]["h200-141gb"]
    profile["node"]["kernel_modules"] = "proprietary"
    table = tmp_path / "releases.json"
    table.write_text(
        json.dumps({"sovereign_releases": releases["sovereign_releases"]}), encoding="utf-8"
    )
    result = run_validate(
        inventory,
        playbook="playbooks/render_gpu_nodes.yml",
        extra=(
            "-e",
            f"sovereign_render_dir={tmp_path / 'out'}",
            "-e",
            f"@{table}",
            "--limit",
            f"localhost,{H200}",
        ),
    )
    assert result.returncode != 0
    assert (
        "DGXB200 supports only open kernel modules, not proprietary (gpu_driver_kernel_modules)"
        in result.stdout
    )


def test_netplan_when_the_inventory_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_validate(
        ROOT / "inventories/example",
        playbook="playbooks/render_gpu_nodes.yml",
        extra=(
            "-e",
            f"sovereign_render_dir={out}",
            "-e",
            "roce_network_backend=netplan",
            "--limit",
            f"localhost,{H200}",
        ),
    )
    assert result.returncode == 0, result.stdout[-4000:]
    netplan = yaml.safe_load((out / H200 / "etc/netplan/60-sovereign-roce.yaml").read_text())
    nics = netplan["network"]["ethernets"]
    assert nics["ens1f0np0"]["mtu"] == 4200
    assert nics["ens1f0np0"]["addresses"] == ["10.40.1.15/24"]
    assert nics["ens2f0np0"]["addresses"] == ["10.40.2.15/24"]
    assert not (out / H200 / "etc/systemd/network/20-sovereign-roce-ens1f0np0.network").exists()
