"""Sovereign: services and Ansible plugins of an on-prem LLM platform distribution."""

from __future__ import annotations

__version__ = "0.1.0"
