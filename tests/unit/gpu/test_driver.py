"""sovereign.gpu.driver: the gpu_driver role's stack worked out from the pins
and the platform, and every refusal with its reason; what the mirror lacks,
kernel packages an install would bring, what drifted off its pin."""

from __future__ import annotations

from typing import Any

import pytest

from sovereign.gpu import driver

PINS: dict[str, Any] = {
    "branch": "580",
    "version": "580.82.07",
    "kernel_modules": "open",
    "product_name": "DGXH100 920-23687-2530-000",
    "cuda_version": "12.8",
    "dcgm_version": "1:4.2.3-1",
    "dcgm_exporter_version": "4.2.3-4.1.3-1",
}


def versions(stack: dict[str, Any]) -> dict[str, str]:
    return {package["name"]: package["version"] for package in stack["packages"]}


def test_an_nvswitch_platform_gets_fabric_manager_at_the_driver_version() -> None:
    stack = driver.plan(PINS)
    assert stack["platform"] == "DGXH100"
    assert versions(stack) == {
        "nvidia-driver-pinning-580.82.07": "580.82.07-1",
        "nvidia-driver-cuda": "580.82.07-1",
        "nvidia-kernel-open-dkms": "580.82.07-1",
        "nvidia-persistenced": "580.82.07-1",
        "nvidia-fabricmanager": "580.82.07-1",
        "libnvidia-nscq": "580.82.07-1",
        "cuda-libraries-12-8": "12.8.*",
        "datacenter-gpu-manager-4-core": "1:4.2.3-1",
        "datacenter-gpu-manager-4-cuda12": "1:4.2.3-1",
        "datacenter-gpu-manager-exporter": "4.2.3-4.1.3-1",
    }
    assert stack["services"] == [
        "nvidia-persistenced",
        "nvidia-fabricmanager",
        "nvidia-dcgm",
        "nvidia-dcgm-exporter",
    ]


def test_branches_before_580_carry_the_branch_in_the_fabric_manager_name() -> None:
    stack = driver.plan({**PINS, "branch": "570", "version": "570.172.08"})
    names = versions(stack)
    assert names["nvidia-fabricmanager-570"] == "570.172.08-1"
    assert names["libnvidia-nscq-570"] == "570.172.08-1"
    assert not any(name.startswith("nvidia-driver-pinning") for name in names)


def test_a_pcie_server_gets_no_fabric_manager() -> None:
    stack = driver.plan({**PINS, "product_name": "PowerEdge R760xa"})
    assert stack["platform"] == ""
    assert not stack["fabric_manager"]
    assert not any("fabricmanager" in name for name in versions(stack))


def test_blackwell_needs_the_nvlink_subnet_manager_and_open_modules() -> None:
    b200 = {**PINS, "product_name": "DGXB200 920-23687-2530-000", "nvlsm_version": "2025.10.12-1"}
    assert versions(driver.plan(b200))["nvlsm"] == "2025.10.12-1"
    with pytest.raises(driver.DriverPlanError, match="gpu_driver_nvlsm_version must look like"):
        driver.plan({**b200, "nvlsm_version": ""})
    with pytest.raises(driver.DriverPlanError, match="DGXB200 supports only open kernel modules"):
        driver.plan({**b200, "kernel_modules": "proprietary"})


def test_a_site_platform_extends_the_table() -> None:
    site = {"SYS-821GE-TNHR": {"fabric_manager": True}}
    stack = driver.plan({**PINS, "product_name": "SYS-821GE-TNHR", "platforms_site": site})
    assert stack["platform"] == "SYS-821GE-TNHR"
    assert stack["fabric_manager"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "590.48.01"}, "gpu_driver_version 590.48.01 is not on branch 580"),
        ({"version": "580.82.07; reboot"}, "gpu_driver_version must look like"),
        ({"branch": 580}, "gpu_driver_branch must look like"),
        ({"kernel_modules": "nouveau"}, "must be open or proprietary"),
        ({"fabric_manager": "yes"}, "gpu_driver_fabric_manager must be auto, true or false"),
        (
            {"product_name": "PowerEdge XE9680", "nvswitch_count": 4},
            "PowerEdge XE9680 .no NVSwitch platform. has 4 NVSwitch devices",
        ),
        ({"cuda_version": "12"}, "gpu_driver_cuda_version must look like 12.8"),
        ({"cuda_package_version": "12.9.0-1"}, "is not a CUDA 12.8 version"),
        ({"cuda_version": ""}, "gpu_driver_dcgm_version needs gpu_driver_cuda_version"),
        ({"dcgm_version": ""}, "gpu_driver_dcgm_exporter_version needs gpu_driver_dcgm_version"),
        ({"platforms_site": {"X": {"fabric_manager": "yes"}}}, "fabric_manager and nvlsm are true"),
        ({"platforms_site": {"X": {"gpus": 8}}}, "must be a mapping with keys among"),
        ({"platforms_site": {"X": {"kernel_modules": []}}}, "kernel_modules must list open"),
    ],
)
def test_refusals_name_the_input(change: dict[str, Any], message: str) -> None:
    with pytest.raises(driver.DriverPlanError, match=message):
        driver.plan({**PINS, **change})


def test_fabric_manager_can_be_forced_off_only_without_nvswitches() -> None:
    assert not driver.plan({**PINS, "fabric_manager": False, "nvswitch_count": 0})["fabric_manager"]
    with pytest.raises(driver.DriverPlanError, match="has 4 NVSwitch devices"):
        driver.plan({**PINS, "fabric_manager": False, "nvswitch_count": 4})


MADISON = """\
nvidia-driver-cuda | 580.95.05-1 | http://mirror/ / Packages
nvidia-driver-cuda | 580.82.07-1 | http://mirror/ / Packages
nvidia-fabricmanager | 580.95.05-1 | http://mirror/ / Packages
nvidia-fabricmanager | 580.65.06-1 | http://mirror/ / Packages
cuda-libraries-12-8 |   12.8.1-1 | http://mirror/ / Packages
"""


def test_missing_from_mirror_names_what_it_has() -> None:
    packages = [
        {"component": "driver", "name": "nvidia-driver-cuda", "version": "580.82.07-1"},
        {"component": "fabric manager", "name": "nvidia-fabricmanager", "version": "580.82.07-1"},
        {"component": "CUDA", "name": "cuda-libraries-12-8", "version": "12.8.*"},
        {"component": "DCGM", "name": "datacenter-gpu-manager-4-core", "version": "1:4.2.3-1"},
    ]
    assert driver.missing_from_mirror(MADISON, packages) == [
        "nvidia-fabricmanager 580.82.07-1 (fabric manager) is not in the mirror; "
        "it has 580.65.06-1, 580.95.05-1",
        "datacenter-gpu-manager-4-core 1:4.2.3-1 (DCGM) is not in the mirror; "
        "it has no version at all",
    ]


def test_kernel_changes_are_found_in_a_simulation() -> None:
    simulation = """\
Inst linux-image-6.99.0-1-amd64 (6.99.0-1 Sovereign:/ [all])
Inst linux-headers-6.1.0-28-amd64 (6.1.0-28 Debian:12 [amd64])
Inst nvidia-kernel-open-dkms (580.71.02-1 Sovereign:/ [all])
Conf linux-image-6.99.0-1-amd64 (6.99.0-1 Sovereign:/ [all])
"""
    assert driver.kernel_changes(simulation, ["linux-headers-6.1.0-28-amd64"]) == [
        "linux-image-6.99.0-1-amd64"
    ]
    assert driver.kernel_changes("Inst nvidia-smi (580.82.07-1 x)\n") == []


def test_off_pin_names_the_fabric_manager_apart() -> None:
    stack = driver.plan(PINS)
    installed = "\n".join(f"{name} {version}" for name, version in versions(stack).items())
    installed = installed.replace("12.8.*", "12.8.1-1")
    assert driver.off_pin(stack, installed) == []
    moved = installed.replace(
        "nvidia-fabricmanager 580.82.07-1", "nvidia-fabricmanager 580.95.05-1"
    )
    assert driver.off_pin(stack, moved) == [
        "nvidia-fabricmanager is 580.95.05-1 but the driver is 580.82.07: the fabric manager "
        "must be the driver's version (it refuses to start otherwise)"
    ]
    dcgm = installed.replace("datacenter-gpu-manager-4-core 1:4.2.3-1", "")
    assert driver.off_pin(stack, dcgm) == ["datacenter-gpu-manager-4-core (DCGM) is not installed"]
    cuda = installed.replace("12.8.1-1", "12.9.0-1")
    assert driver.off_pin(stack, cuda) == [
        "cuda-libraries-12-8 (CUDA 12.8 user space) is 12.9.0-1, pinned 12.8.*"
    ]
