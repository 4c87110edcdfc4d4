"""Load the roles' ``meta/argument_specs.yml`` files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sovereign.inventory.errors import SpecError


@dataclass(frozen=True)
class RoleSpec:
    """The ``main`` entry point of one role's argument spec."""

    role: str
    options: Mapping[str, Mapping[str, Any]]

    @property
    def prefix(self) -> str:
        return f"{self.role}_"

    def required_options(self) -> list[str]:
        return sorted(name for name, spec in self.options.items() if spec.get("required"))


def load_role_spec(role_dir: Path, path: Path | None = None) -> RoleSpec:
    """Read ``<role_dir>/meta/argument_specs.yml`` (or ``path``) and return its
    main entry point."""
    path = path or role_dir / "meta" / "argument_specs.yml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: is not valid YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise SpecError(f"{path}: expected a mapping with 'argument_specs'")
    specs = document.get("argument_specs")
    if not isinstance(specs, Mapping) or not isinstance(specs.get("main"), Mapping):
        raise SpecError(f"{path}: has no 'argument_specs.main' entry point")
    options = specs["main"].get("options") or {}
    if not isinstance(options, Mapping):
        raise SpecError(f"{path}: 'argument_specs.main.options' must be a mapping")
    for name, option in options.items():
        if not isinstance(option, Mapping):
            raise SpecError(f"{path}: option {name!r} must be a mapping")
    return RoleSpec(role=role_dir.name, options=options)


def load_role_specs(roles_dir: Path) -> dict[str, RoleSpec]:
    """Load every role under ``roles_dir`` that ships an argument spec."""
    if not roles_dir.is_dir():
        raise SpecError(f"{roles_dir}: roles directory not found")
    return {
        role_dir.name: load_role_spec(role_dir)
        for role_dir in sorted(roles_dir.iterdir())
        if (role_dir / "meta" / "argument_specs.yml").is_file()
    }


# The play-level variables of the playbooks, as one pseudo-role named
# "sovereign" (prefix sovereign_; a role's longer prefix, sovereign_package_,
# still wins).
PLAY_ROLE = "sovereign"
PLAY_SPEC = Path("playbooks/vars/argument_specs.yml")


def load_play_spec(root: Path) -> RoleSpec:
    """The spec of the playbooks' own ``sovereign_*`` variables."""
    path = root / PLAY_SPEC
    spec = load_role_spec(path.parent.parent.parent / "_", path=path)
    return RoleSpec(role=PLAY_ROLE, options=spec.options)
