"""Push a deliberately bad model artifact for the model_sync scenario.

``sovereign model publish`` refuses to push what the scenario needs, so this
helper drives the same registry client directly:

- ``tampered``: the files of a signed model directory with one byte of
  WEIGHTS flipped, pushed with the directory's original ``model.sig``;
- ``unsigned``: the files of a model directory without any ``model.sig`` layer.

Usage: python push_bad_artifact.py MODE MODEL_DIR REGISTRY/REPOSITORY:TAG CA_BUNDLE USERNAME
(the registry password on stdin).
Prints the manifest digest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from sovereign.model.artifact import EMPTY_CONFIG, SIGNATURE_MEDIA_TYPE, Layer, build_manifest
from sovereign.model.credentials import Credentials
from sovereign.model.digest import SIGNATURE_FILE, DigestManifest, FileDigest, hash_file, list_files
from sovereign.model.reference import parse_reference
from sovereign.model.registry import RegistryClient

WEIGHTS = "weights.bin"
FLIP_OFFSET = 1_000_003


def main(mode: str, source: Path, reference: str, ca_bundle: Path, username: str) -> str:
    target = parse_reference(reference)
    credentials = Credentials(username, sys.stdin.readline().rstrip("\r\n"))
    with tempfile.TemporaryDirectory(prefix="model-sync-bad-") as scratch:
        model = Path(scratch) / "model"
        shutil.copytree(source, model)
        signature = model / SIGNATURE_FILE
        if mode == "tampered":
            if not signature.is_file():
                raise SystemExit(f"{source} is not signed: publish it first")
            with (model / WEIGHTS).open("r+b") as weights:
                weights.seek(FLIP_OFFSET)
                byte = weights.read(1)
                weights.seek(FLIP_OFFSET)
                weights.write(bytes([byte[0] ^ 0x01]))
        elif mode == "unsigned":
            signature.unlink(missing_ok=True)
        else:
            raise SystemExit(f"unknown mode {mode!r}: tampered or unsigned")
        files = DigestManifest(
            tuple(FileDigest(rel, size, hash_file(path)) for rel, path, size in list_files(model))
        )
        with RegistryClient(
            target.registry, credentials=credentials, ca_bundle=ca_bundle
        ) as client:
            client.push_blob_bytes(target.repository, EMPTY_CONFIG)
            for item in files.files:
                client.push_blob_file(
                    target.repository, model / item.path, f"sha256:{item.sha256}", item.size
                )
            if mode == "tampered":
                data = signature.read_bytes()
                sig = Layer(
                    SIGNATURE_FILE,
                    client.push_blob_bytes(target.repository, data),
                    len(data),
                    SIGNATURE_MEDIA_TYPE,
                )
                body = build_manifest(files, sig, name=mode)
            else:
                # build_manifest always adds the signature layer: drop it again.
                placeholder = Layer(SIGNATURE_FILE, "sha256:" + "0" * 64, 0, SIGNATURE_MEDIA_TYPE)
                document = json.loads(build_manifest(files, placeholder, name=mode))
                document["layers"] = document["layers"][:-1]
                body = json.dumps(document, indent=2, sort_keys=True).encode()
            client.put_manifest(target.repository, target.tag or "latest", body)
    return "sha256:" + hashlib.sha256(body).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    print(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5]))
