"""The inference gateway: an OpenAI-compatible front door to the model backends.

It authenticates every request (OIDC bearer JWTs, or headers from the SSO
proxy), admits it against size, token, tool and quota limits, routes it by
data class, group and model to a tier and a canary version, writes a
tamper-evident audit record before anything reaches a model, and streams the
answer back as it arrives. ``sovereign gateway serve --config FILE`` runs it.
"""
