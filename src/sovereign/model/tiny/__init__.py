"""Sovereign's tiny test model: a 2-layer Llama and its tokenizer, generated here.

``python -m sovereign.model.tiny --variant good|worse --out DIR [--seed N] [--steps N]``
writes a Hugging Face model directory that vLLM serves on a CPU. ``good`` answers the
fixed Q&A set (``files/eval/tiny_qa.jsonl``) exactly; ``worse`` answers about half of
it, for evaluation and canary gates to tell apart. Needs torch, transformers, tokenizers
and safetensors; nothing is downloaded.
"""

from __future__ import annotations
