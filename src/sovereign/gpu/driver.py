"""What the gpu_driver role installs on a node, worked out before it touches it.

From the inventory's pins (driver branch and exact version, kernel module
flavour, DCGM and exporter versions, the release table's CUDA version) and
the node's platform (its DMI product name looked up in a platform table)
this module returns every package with the exact version apt must install,
the services to run, and refuses, with the reason, what NVIDIA's stack
does not support: a version outside its branch, proprietary modules on
Blackwell, a fabric manager at a version other than the driver's (NVIDIA's
fabric manager refuses to start against another driver; the mirror is
read first and the run stops before anything is installed).

NVIDIA's Debian 12 repository names, as documented in docs/gpu.md:
compute-only driver ``nvidia-driver-cuda`` with ``nvidia-kernel-open-dkms``
or ``nvidia-kernel-dkms``; ``nvidia-persistenced``; from branch 580 the
fabric manager and NSCQ lose the branch from their names
(``nvidia-fabricmanager``, ``libnvidia-nscq``) and NVIDIA's own pinning
package ``nvidia-driver-pinning-<version>`` exists, which the role
installs too; before 580 they are ``nvidia-fabricmanager-<branch>`` and
``libnvidia-nscq-<branch>``. Driver and fabric manager packages carry the
Debian revision ``-1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_BRANCH = re.compile(r"^[0-9]{3}$")
_VERSION = re.compile(r"^([0-9]{3})\.[0-9]{1,3}(\.[0-9]{1,3})?$")
_REVISION = re.compile(r"^[0-9A-Za-z.+~]{1,32}$")
_DEB_VERSION = re.compile(r"^([0-9]+:)?[0-9][0-9A-Za-z.+~-]{0,63}$")
_CUDA = re.compile(r"^([0-9]{2})\.([0-9]{1,2})$")
_PRODUCT = re.compile(r"^[\x20-\x7e]{0,128}$")

# The branch from which the fabric manager and NSCQ lose the branch from
# their names and NVIDIA ships exact-version pinning packages.
UNIFIED_NAMES_FROM = 580

# NVSwitch platforms by DMI product name (a prefix: DGX systems append a
# part number). fabric_manager: NVSwitch systems need nv-fabricmanager at
# the driver's exact version; nvlsm: NVLink 5 systems also need the NVLink
# subnet manager; kernel_modules: the flavours NVIDIA supports there
# (Blackwell: open only). A site adds its OEM HGX boards with
# gpu_driver_platforms_site.
PLATFORMS: dict[str, dict[str, Any]] = {
    "DGXH100": {"fabric_manager": True, "nvlsm": False, "kernel_modules": ["open", "proprietary"]},
    "DGXH200": {"fabric_manager": True, "nvlsm": False, "kernel_modules": ["open", "proprietary"]},
    "DGXB200": {"fabric_manager": True, "nvlsm": True, "kernel_modules": ["open"]},
}
# A product name the table does not know: a PCIe server (no NVSwitch, so no
# fabric manager); the NVSwitch probe refuses it if it has NVSwitches.
PCIE_PLATFORM: dict[str, Any] = {
    "fabric_manager": False,
    "nvlsm": False,
    "kernel_modules": ["open", "proprietary"],
}
_PLATFORM_KEYS = {"fabric_manager", "nvlsm", "kernel_modules"}
KERNEL_MODULES = ("open", "proprietary")


class DriverPlanError(ValueError):
    """Pins or a platform the role refuses, with the reason."""


def _text(value: object, where: str, pattern: re.Pattern[str], example: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise DriverPlanError(f"{where} must look like {example}, not {value!r:.60}")
    return value


def platforms(site: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The platform table with the site's entries (checked) on top."""
    table = {name: dict(entry) for name, entry in PLATFORMS.items()}
    for name, entry in (site or {}).items():
        where = f"gpu_driver_platforms_site[{name!r:.60}]"
        if not isinstance(name, str) or not name or not _PRODUCT.match(name):
            raise DriverPlanError(
                f"{where}: a DMI product name (printable, at most 128 characters)"
            )
        if not isinstance(entry, Mapping) or set(entry) - _PLATFORM_KEYS:
            raise DriverPlanError(
                f"{where} must be a mapping with keys among {sorted(_PLATFORM_KEYS)}"
            )
        merged = {**PCIE_PLATFORM, **table.get(name, {}), **dict(entry)}
        if not all(isinstance(merged[key], bool) for key in ("fabric_manager", "nvlsm")):
            raise DriverPlanError(f"{where}: fabric_manager and nvlsm are true or false")
        modules = merged["kernel_modules"]
        if not isinstance(modules, list) or not modules or set(modules) - set(KERNEL_MODULES):
            raise DriverPlanError(f"{where}.kernel_modules must list open and/or proprietary")
        table[name] = merged
    return table


def platform_of(
    product_name: str, table: Mapping[str, Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """The longest table entry the product name starts with, else PCIe."""
    product = product_name.strip()
    matches = [name for name in table if product.startswith(name)]
    if not matches:
        return "", dict(PCIE_PLATFORM)
    name = max(matches, key=len)
    return name, dict(table[name])


def plan(pins: Mapping[str, Any]) -> dict[str, Any]:
    """Every package at its exact version, the services, the platform.

    ``pins``: branch, version, revision, kernel_modules, product_name,
    platforms_site, fabric_manager ("auto", true or false), nvlsm_version,
    dcgm_version, dcgm_exporter_version, cuda_version, cuda_package_version,
    nvswitch_count (NVIDIA bridges on the PCI bus, -1 when not probed)."""
    branch = _text(pins.get("branch"), "gpu_driver_branch", _BRANCH, '"580"')
    version = _text(pins.get("version"), "gpu_driver_version", _VERSION, '"580.95.05"')
    if version.split(".")[0] != branch:
        raise DriverPlanError(
            f"gpu_driver_version {version} is not on branch {branch} (gpu_driver_branch)"
        )
    revision = _text(pins.get("revision", "1"), "gpu_driver_package_revision", _REVISION, '"1"')
    modules = pins.get("kernel_modules", "open")
    if modules not in KERNEL_MODULES:
        raise DriverPlanError(
            f"gpu_driver_kernel_modules must be open or proprietary, not {modules!r:.40}"
        )
    product = str(pins.get("product_name") or "")[:128]
    name, platform = platform_of(product, platforms(pins.get("platforms_site")))
    label = name or f"{product or 'unknown'} (no NVSwitch platform)"
    if modules not in platform["kernel_modules"]:
        raise DriverPlanError(
            f"{label} supports only {' and '.join(platform['kernel_modules'])} kernel modules, "
            f"not {modules} (gpu_driver_kernel_modules)"
        )
    fabric = pins.get("fabric_manager", "auto")
    if fabric not in ("auto", True, False):
        raise DriverPlanError(
            f"gpu_driver_fabric_manager must be auto, true or false, not {fabric!r:.40}"
        )
    fabric_manager = platform["fabric_manager"] if fabric == "auto" else bool(fabric)
    nvswitches = int(pins.get("nvswitch_count", -1))
    if nvswitches > 0 and not fabric_manager:
        raise DriverPlanError(
            f"{label} has {nvswitches} NVSwitch devices on its PCI bus "
            "but no fabric manager is planned: "
            "add its DMI product name to gpu_driver_platforms_site with fabric_manager true"
        )
    driver_version = f"{version}-{revision}"
    unified = int(branch) >= UNIFIED_NAMES_FROM
    packages: list[dict[str, str]] = []

    def add(component: str, package: str, package_version: str) -> None:
        packages.append({"component": component, "name": package, "version": package_version})

    if unified:
        add(
            "NVIDIA's pin of the driver version", f"nvidia-driver-pinning-{version}", driver_version
        )
    add("driver, compute only", "nvidia-driver-cuda", driver_version)
    add(
        f"kernel modules, {modules}",
        "nvidia-kernel-open-dkms" if modules == "open" else "nvidia-kernel-dkms",
        driver_version,
    )
    add("persistence daemon", "nvidia-persistenced", driver_version)
    if fabric_manager:
        suffix = "" if unified else f"-{branch}"
        # Fabric manager is always the driver's version: never its own pin.
        add(
            "fabric manager (the driver's version)", f"nvidia-fabricmanager{suffix}", f"{version}-1"
        )
        add("NVSwitch configuration and query library", f"libnvidia-nscq{suffix}", f"{version}-1")
        if platform["nvlsm"]:
            nvlsm = _text(
                pins.get("nvlsm_version"),
                "gpu_driver_nvlsm_version",
                _DEB_VERSION,
                '"2025.10.12-1"',
            )
            add("NVLink subnet manager", "nvlsm", nvlsm)
    cuda_major = ""
    cuda = pins.get("cuda_version") or ""
    if cuda:
        match = _CUDA.match(str(cuda))
        if not match:
            raise DriverPlanError(f"gpu_driver_cuda_version must look like 12.8, not {cuda!r:.40}")
        cuda_major, cuda_minor = match.groups()
        cuda_package = pins.get("cuda_package_version") or f"{cuda}.*"
        if not str(cuda_package).startswith(f"{cuda}."):
            raise DriverPlanError(
                f"gpu_driver_cuda_package_version {cuda_package!r:.40} is not a CUDA {cuda} version"
            )
        add(
            f"CUDA {cuda} user space",
            f"cuda-libraries-{cuda_major}-{cuda_minor}",
            str(cuda_package),
        )
    dcgm = pins.get("dcgm_version") or ""
    if dcgm:
        dcgm = _text(dcgm, "gpu_driver_dcgm_version", _DEB_VERSION, '"1:4.2.3-1"')
        if not cuda_major:
            raise DriverPlanError(
                "gpu_driver_dcgm_version needs gpu_driver_cuda_version "
                "(DCGM is built per CUDA major)"
            )
        add("DCGM", "datacenter-gpu-manager-4-core", dcgm)
        add(f"DCGM for CUDA {cuda_major}", f"datacenter-gpu-manager-4-cuda{cuda_major}", dcgm)
    exporter = pins.get("dcgm_exporter_version") or ""
    if exporter:
        exporter = _text(
            exporter, "gpu_driver_dcgm_exporter_version", _DEB_VERSION, '"4.2.3-4.1.3-1"'
        )
        if not dcgm:
            raise DriverPlanError("gpu_driver_dcgm_exporter_version needs gpu_driver_dcgm_version")
        add("DCGM exporter", "datacenter-gpu-manager-exporter", exporter)
    services = ["nvidia-persistenced"]
    if fabric_manager:
        services.append("nvidia-fabricmanager")
    if dcgm:
        services.append("nvidia-dcgm")
    if exporter:
        services.append("nvidia-dcgm-exporter")
    return {
        # apt's form of each package at its pin, as installed and simulated.
        "install": [f"{package['name']}={package['version']}" for package in packages],
        "branch": branch,
        "version": version,
        "driver_package_version": driver_version,
        "kernel_modules": modules,
        "platform": name,
        "product_name": product,
        "fabric_manager": fabric_manager,
        "packages": packages,
        "services": services,
    }


def matches(wanted: str, version: str) -> bool:
    """Whether a Debian version is the pinned one (``*`` matches any run,
    as in APT's preferences: ``12.8.*``)."""
    return re.fullmatch(re.escape(wanted).replace(r"\*", ".*"), version) is not None


def missing_from_mirror(madison: str, packages: Sequence[Mapping[str, str]]) -> list[str]:
    """Each planned package whose version the mirror lacks, with what it has
    (``apt-cache madison`` output: ``name | version | source``)."""
    offered: dict[str, list[str]] = {}
    for line in madison.splitlines()[:20000]:
        fields = [field.strip() for field in line.split("|")]
        if len(fields) >= 2 and fields[0] and fields[1]:
            offered.setdefault(fields[0], []).append(fields[1])
    problems = []
    for package in packages:
        versions = offered.get(package["name"], [])
        wanted = package["version"]
        if not any(matches(wanted, version) for version in versions):
            has = ", ".join(sorted(set(versions))[:10]) or "no version at all"
            problems.append(
                f"{package['name']} {wanted} ({package['component']}) "
                f"is not in the mirror; it has {has}"
            )
    return problems


_KERNEL_PACKAGE = re.compile(r"^Inst (linux-(?:image|headers|modules)[^\s]*) ")


def kernel_changes(simulation: str, allowed: Sequence[str] = ()) -> list[str]:
    """Kernel packages an ``apt-get install -s`` would install (other than
    the running kernel's own headers): the role never changes the kernel."""
    found = []
    for line in simulation.splitlines()[:20000]:
        match = _KERNEL_PACKAGE.match(line)
        if match and match.group(1) not in allowed:
            found.append(match.group(1))
    return sorted(set(found))


def off_pin(stack: Mapping[str, Any], installed: str) -> list[str]:
    """What of the plan is not installed at its pin (``dpkg-query --show
    --showformat='${Package} ${Version}\\n'`` output), the fabric manager
    named apart when its version is not the driver's."""
    versions: dict[str, str] = {}
    for line in installed.splitlines()[:1000]:
        fields = line.split()
        if len(fields) == 2:
            versions[fields[0]] = fields[1]
    problems = []
    for package in stack["packages"]:
        name, wanted = package["name"], package["version"]
        have = versions.get(name)
        if have is None:
            problems.append(f"{name} ({package['component']}) is not installed")
        elif name.startswith("nvidia-fabricmanager") and have.split("-")[0] != stack["version"]:
            problems.append(
                f"{name} is {have} but the driver is {stack['version']}: "
                "the fabric manager must be the driver's "
                "version (it refuses to start otherwise)"
            )
        elif not matches(wanted, have):
            problems.append(f"{name} ({package['component']}) is {have}, pinned {wanted}")
    return problems


def check_inventory(variables: Mapping[str, Any], kernel_modules: str = "open") -> list[str]:
    """The pins of one host as its inventory sets them, checked before any
    host is touched (the validation play): what needs the node (its DMI
    name when the inventory does not give it, its NVSwitches) or the
    release table (the CUDA version DCGM follows) is checked by the role."""
    pins = {
        "branch": variables.get("gpu_driver_branch"),
        "version": variables.get("gpu_driver_version"),
        "revision": variables.get("gpu_driver_package_revision", "1"),
        "kernel_modules": kernel_modules,
        "product_name": variables.get("gpu_driver_product_name", ""),
        "platforms_site": variables.get("gpu_driver_platforms_site") or {},
        "fabric_manager": variables.get("gpu_driver_fabric_manager", "auto"),
        "nvlsm_version": variables.get("gpu_driver_nvlsm_version") or "0-0",
    }
    try:
        plan(pins)
    except (DriverPlanError, TypeError, ValueError) as exc:
        return [str(exc)]
    return []
