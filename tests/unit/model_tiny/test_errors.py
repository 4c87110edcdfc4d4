"""Every error of the generator is a TinyModelError, so a caller catches one type."""

from __future__ import annotations

import pytest

from sovereign.model.tiny import errors


@pytest.mark.parametrize(
    "error", [errors.QASetError, errors.MissingDependencyError, errors.ModelDirectoryError]
)
def test_errors_share_one_base(error: type[Exception]) -> None:
    assert issubclass(error, errors.TinyModelError)
