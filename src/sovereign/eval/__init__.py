"""The evaluation runner (``sovereign eval``): datasets, runs on Inspect AI, the gate.

Runs a JSONL dataset against the gateway (as a service account) or a vLLM
backend, records what served it, compares with a baseline run item by item, and
exports the gate to Prometheus. Inspect AI, jsonschema and numpy come with the
``eval`` extra (``pip install 'sovereign[eval]'``); service hosts do without.
See docs/eval.md.
"""
