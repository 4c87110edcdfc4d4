"""Exceptions of the tiny test model generator."""

from __future__ import annotations


class TinyModelError(Exception):
    """The tiny model cannot be generated or scored; the message says why and what to do."""


class QASetError(TinyModelError):
    """The Q&A set file is missing or malformed; the message names the file and line."""


class MissingDependencyError(TinyModelError):
    """torch, transformers or tokenizers is not installed."""


class ModelDirectoryError(TinyModelError):
    """A model directory cannot be written or read."""
