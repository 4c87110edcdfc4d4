"""Mint an RS256 access token the way the IdP would, for the molecule scenario.

usage: mint_token.py PRIVATE_KEY_PEM ISSUER USER GROUPS TEAM [tamper]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jwt

key, issuer, user, groups, team = sys.argv[1:6]
now = int(time.time())
token = jwt.encode(
    {
        "iss": issuer,
        "aud": "sovereign-gateway",
        "sub": user,
        "preferred_username": user,
        "groups": groups.split(","),
        "team": team,
        "iat": now,
        "exp": now + 600,
    },
    Path(key).read_text(encoding="utf-8"),
    algorithm="RS256",
    headers={"kid": "molecule-1"},
)
if sys.argv[6:] == ["tamper"]:
    header, payload, signature = token.split(".")
    forged = payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB")
    token = ".".join([header, forged, signature])
print(token)
