"""Settings: one typed object, env prefix BIONER_, nonsense refused before anything loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from service.decoding.aggregate import Decoding, Strategy
from service.settings import Settings


def test_environment_maps_onto_typed_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIONER_DECODING", "greedy")
    monkeypatch.setenv("BIONER_AGGREGATION_STRATEGY", "max")
    monkeypatch.setenv("BIONER_MAX_BATCH_SIZE", "4")
    settings = Settings()
    assert (settings.decoding, settings.aggregation_strategy, settings.max_batch_size) == (Decoding.GREEDY, Strategy.MAX, 4)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"decoding": "beam"}, "decoding"),
        ({"aggregation_strategy": "mean"}, "aggregation_strategy"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"drain_grace_s": 25, "drain_timeout_s": 20}, "drain_grace_s"),
        ({"max_request_windows": 5000, "max_queue_windows": 1000}, "could never be queued"),
    ],
)
def test_nonsense_is_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("keys", [{"api_keys": SecretStr(" , ")}, {"api_keys_file": "empty"}, {"api_keys_file": "missing"}])
def test_keys_configured_but_empty_fail_closed(tmp_path: Path, keys: dict[str, object]) -> None:
    if keys.get("api_keys_file") == "empty":
        (tmp_path / "empty").write_text("# no keys yet\n\n")
    if "api_keys_file" in keys:
        keys = {"api_keys_file": tmp_path / str(keys["api_keys_file"])}
    with pytest.raises(ValueError, match="API keys|unreadable"):
        Settings(**keys).key_digests()  # type: ignore[arg-type]


def test_cli_flags_are_the_settings_fields() -> None:
    from service.cli import build_parser

    serve = build_parser().parse_args(["serve", "--decoding", "greedy", "--max-batch-size", "4", "--no-warmup"])
    overrides = {k: v for k, v in vars(serve).items() if k in Settings.model_fields and v is not None}
    assert Settings(**overrides).model_dump(include=set(overrides)) == {"decoding": Decoding.GREEDY, "max_batch_size": 4, "warmup": False}
