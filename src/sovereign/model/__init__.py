"""Model artifacts: digest, sign, verify, publish to and pull from an OCI registry.

A model is a directory of regular files. Its signature (OpenSSF model-signing,
key-based, offline) lives beside the weights as ``model.sig`` so it travels with
the artifact; every other file is content, pinned by its SHA-256.
"""

from __future__ import annotations
