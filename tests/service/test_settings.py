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


def test_models_parse_in_order_and_model_path_stays_alone(tmp_path: Path) -> None:
    settings = Settings(models=" prot = a/b , chem=/c/d,", default_model="chem")
    assert settings.named_models() == {"prot": Path("a/b"), "chem": Path("/c/d")}
    assert Settings().named_models() == {}  # neither set: model_path, one model named after its bundle


def test_models_dir_serves_each_bundle_folder_by_name(tmp_path: Path) -> None:
    for name in ("zeta", "alpha", "no-bundle"):
        (tmp_path / name).mkdir()
    for name in ("zeta", "alpha"):
        (tmp_path / name / "model.onnx").write_bytes(b"")
    assert Settings(models_dir=tmp_path).named_models() == {"alpha": tmp_path / "alpha", "zeta": tmp_path / "zeta"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"models": "a=x,a=y"}, "model name 'a' is given twice"),
        ({"models": "a b=x"}, "model name 'a b': use 1-64 letters"),
        ({"models": "-a=x"}, "model name '-a'"),
        ({"models": "x" * 65 + "=x"}, "use 1-64 letters"),
        ({"models": "a=x,b"}, "'b' is not name=path"),
        ({"models": "=x"}, "'=x' is not name=path"),
        ({"models": " , "}, "names no model"),
        ({"models": "a=x", "default_model": "b"}, "default_model 'b' is not among the models: a"),
        ({"models": "a=x", "models_dir": "."}, "set models or models_dir, not both"),
        ({"models_dir": "nowhere-at-all"}, "is not a folder"),
    ],
)
def test_bad_model_lists_are_refused_with_one_clear_line(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]


def test_models_dir_without_bundles_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="holds no bundle"):
        Settings(models_dir=tmp_path)


def test_model_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from service.cli import build_parser

    monkeypatch.setenv("BIONER_MODELS", "a=x,b=y")
    monkeypatch.setenv("BIONER_DEFAULT_MODEL", "b")
    assert list(Settings().named_models()) == ["a", "b"] and Settings().default_model == "b"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.onnx").write_bytes(b"")
    serve = build_parser().parse_args(["serve", "--models-dir", str(tmp_path), "--default-model", "m"])
    monkeypatch.delenv("BIONER_MODELS")
    assert Settings(models_dir=serve.models_dir, default_model=serve.default_model).named_models() == {"m": tmp_path / "m"}
