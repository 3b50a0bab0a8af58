"""Architecture dimensions of known models (configs/models.yaml) and of local config.json files.

The catalog is the single place that turns a model name into (a) where its weights come from and (b) the
dimensions the memory estimator and the search space need. An unknown model is a ModelError, never a guess.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from hpo.errors import ModelError
from hpo.paths import CONFIG_DIR, PACKAGE_DIR

Source = Literal["hub", "package", "config", "local"]

ENCODER_ARCHS = {"bert", "roberta", "deberta-v2", "deberta", "xlm-roberta", "electra", "distilbert", "mpnet"}
DECODER_ARCHS = {"llama", "qwen2", "qwen3", "mistral", "gemma", "phi3"}


@dataclass(frozen=True)
class ModelSpec:
    """What hpo knows about one model: where it loads from and its architecture dimensions."""

    name: str
    arch: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 0
    num_kv_heads: int = 0
    embedding_size: int = 0
    tie_embeddings: bool = False
    n_params: int = 0
    source: Source = "hub"
    location: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def family(self) -> Literal["encoder", "decoder"]:
        return "decoder" if self.arch in DECODER_ARCHS else "encoder"

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def emb_size(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def params(self) -> int:
        """Parameter count: the catalog's number if given, otherwise computed from the dimensions."""
        return self.n_params or count_params(self)

    def load_path(self) -> str:
        """The argument for ``from_pretrained`` (hub id, package directory or local path)."""
        if self.source == "package":
            return str(_package_model_dir(self.location))
        if self.source in ("config", "local"):
            return str(_resolve_local(self.location))
        return self.location or self.name


def count_params(spec: ModelSpec) -> int:
    """Parameters of the backbone (embeddings + layers), from the dimensions alone."""
    h, inter, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    if spec.family == "decoder":
        head_dim = h // spec.num_heads
        attn = h * h * 2 + 2 * h * spec.kv_heads * head_dim  # q, o, k, v
        mlp = 3 * h * inter
        per_layer = attn + mlp + 2 * h
        emb = v * h * (1 if spec.tie_embeddings else 2)
        return emb + spec.num_layers * per_layer + h
    e = spec.emb_size
    emb = v * e + spec.max_position_embeddings * e + spec.type_vocab_size * e + 2 * e
    if e != h:
        emb += e * h + h
    per_layer = 4 * (h * h + h) + 2 * h * inter + inter + h + 4 * h
    return emb + spec.num_layers * per_layer


def _package_model_dir(package: str) -> Path:
    try:
        module = __import__(package)
    except ImportError as exc:
        raise ModelError(
            f"model package '{package}' is not installed", f"run `make install` or pip install {package}"
        ) from exc
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(module.__file__ or "").parent / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"model package '{package}' has no config.json under {path}", "reinstall it")
    return path


def _resolve_local(location: str) -> Path:
    path = Path(location)
    if not path.is_absolute():
        path = PACKAGE_DIR / location if (PACKAGE_DIR / location).exists() else Path.cwd() / location
    return path


def spec_from_config_json(name: str, config: dict[str, Any], **kwargs: Any) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face config.json dictionary."""
    arch = str(config.get("model_type", "")).lower()
    if not arch:
        raise ModelError(f"config.json of '{name}' has no model_type", "pass a standard HF model directory")
    try:
        hidden = int(config.get("hidden_size") or config["dim"])
        layers = int(config.get("num_hidden_layers") or config["n_layers"])
        heads = int(config.get("num_attention_heads") or config["n_heads"])
    except KeyError as exc:
        raise ModelError(f"config.json of '{name}' lacks {exc}", "use a supported encoder/decoder") from exc
    return ModelSpec(
        name=name,
        arch=arch,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=int(config.get("intermediate_size") or config.get("hidden_dim") or 4 * hidden),
        vocab_size=int(config.get("vocab_size", 30522)),
        max_position_embeddings=int(config.get("max_position_embeddings", 512)),
        type_vocab_size=int(config.get("type_vocab_size", 0) or 0),
        num_kv_heads=int(config.get("num_key_value_heads", 0) or 0),
        embedding_size=int(config.get("embedding_size", 0) or 0),
        tie_embeddings=bool(config.get("tie_word_embeddings", arch in ENCODER_ARCHS)),
        **kwargs,
    )


@lru_cache(maxsize=4)
def _load_catalog(path: str) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModelError(f"malformed model catalog {path}: {exc}".splitlines()[0], "fix the YAML") from exc
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ModelError(f"model catalog {path} has no 'models' mapping", "fix the YAML")
    return models


def catalog_names(path: Path | None = None) -> list[str]:
    """All model names the catalog knows."""
    return list(_load_catalog(str(path or CONFIG_DIR / "models.yaml")))


def _from_entry(name: str, entry: dict[str, Any]) -> ModelSpec:
    entry = dict(entry)
    source = entry.pop("source", "hub")
    location = str(entry.pop("location", name if source == "hub" else ""))
    if source in ("package", "config", "local") and "hidden_size" not in entry:
        base = ModelSpec(
            name=name,
            arch="bert",
            hidden_size=1,
            num_layers=1,
            num_heads=1,
            intermediate_size=1,
            vocab_size=1,
            source=source,
            location=location,
        )
        cfg = json.loads((Path(base.load_path()) / "config.json").read_text())
        return spec_from_config_json(
            name, cfg, source=source, location=location, n_params=int(entry.get("n_params", 0))
        )
    known = {f for f in ModelSpec.__dataclass_fields__ if f not in ("name", "source", "location", "extra")}
    fields = {k: v for k, v in entry.items() if k in known}
    extra = {k: v for k, v in entry.items() if k not in known}
    try:
        return ModelSpec(name=name, source=source, location=location, extra=extra, **fields)
    except TypeError as exc:
        raise ModelError(f"catalog entry '{name}' is incomplete: {exc}", "fix configs/models.yaml") from exc


def get_spec(model: str, catalog: Path | None = None) -> ModelSpec:
    """Resolve a model name: catalog entry, local directory with config.json, or the HF cache.

    Raises ModelError for a model hpo cannot size (it never guesses).
    """
    entries = _load_catalog(str(catalog or CONFIG_DIR / "models.yaml"))
    if model in entries:
        return _from_entry(model, entries[model])
    aliases = {str(e.get("location")): n for n, e in entries.items() if e.get("source", "hub") == "hub"}
    if model in aliases:
        return replace(_from_entry(aliases[model], entries[aliases[model]]), name=model)
    local = Path(model)
    if (local / "config.json").is_file():
        cfg = json.loads((local / "config.json").read_text())
        return spec_from_config_json(model, cfg, source="local", location=str(local.resolve()))
    cached = _hf_cache_config(model)
    if cached is not None:
        return spec_from_config_json(model, cached, source="hub", location=model)
    raise ModelError(
        f"unknown model '{model}'",
        f"use one of {', '.join(sorted(entries))}, a local directory with config.json, "
        "or add it to configs/models.yaml",
    )


def _hf_cache_config(model: str) -> dict[str, Any] | None:
    """config.json of a hub model already in the local HF cache (no network)."""
    if "/" not in model:
        return None
    home = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"
    )
    snapshots = home / ("models--" + model.replace("/", "--")) / "snapshots"
    for cfg in sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []:
        try:
            return dict(json.loads(cfg.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return None


LORA_TARGET_ALIASES = {  # module names a LoRA target goes by in each architecture
    "query": ("query", "query_proj", "q_proj", "q_lin"),
    "key": ("key", "key_proj", "k_proj", "k_lin"),
    "value": ("value", "value_proj", "v_proj", "v_lin"),
}
LORA_TARGET_SETS = {  # a trial's lora_targets -> the modules LoRA wraps in every layer (decoders)
    "q_v": ("query", "value"),
    "qkvo": ("query", "key", "value", "o_proj"),
    "all_linear": ("query", "key", "value", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def lora_target_names(spec: ModelSpec, targets: tuple[str, ...]) -> tuple[str, ...]:
    """Module attribute names that ``targets`` select in this architecture."""
    return tuple(name for t in targets for name in LORA_TARGET_ALIASES.get(t, (t,)))
