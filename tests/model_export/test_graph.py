from __future__ import annotations

import pytest
from torch import nn

from model_export.errors import UnsupportedArchitectureError
from model_export.graph import mlm_head


def test_unknown_masked_lm_head_is_a_typed_error() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="Linear has no masked-LM head.*architectures"):
        mlm_head(nn.Linear(2, 2))
