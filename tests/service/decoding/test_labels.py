from __future__ import annotations

import pytest

from service.decoding.labels import LabelScheme


def test_scheme_from_config_style_keys() -> None:
    scheme = LabelScheme.from_id2label({"1": "B-DNA", "0": "O", "2": "I-DNA", "3": "S-RNA"})
    assert scheme.labels == ("O", "B-DNA", "I-DNA", "S-RNA")
    assert scheme.entity_types == ("DNA", "RNA")


def test_gaps_in_ids_are_rejected() -> None:
    with pytest.raises(ValueError):
        LabelScheme.from_id2label({0: "O", 2: "B-DNA"})
