"""``load_encoder``: a backbone ready for feature extraction from a checkpoint file.

Three formats are accepted (all read with ``torch.load(weights_only=True)``):

1. our pretraining checkpoints (``mcl_video.training``): a dict with ``model`` (the MCL state dict)
   and ``config`` (``backbone``, ``backbone_options``); the *query* encoder's backbone is taken;
2. an encoder file of ``mcl export --format mcl`` (``format: "mcl-encoder"``, ``backbone``,
   ``backbone_options``, ``state_dict`` and the ``clip`` settings it was trained with), any backbone;
3. a torchvision-format video ResNet state dict (R(2+1)D-18 by default), plain or under
   ``state_dict``, with or without the classifier ``fc.*`` (and with or without a DDP ``module.``
   prefix).

:func:`encoder_settings` reads what a file says about its encoder (backbone, clip length, stride, input
size) without building it; :func:`clip_settings` fills the evaluation's clip settings from it.

Keys must fit the backbone exactly (apart from ``fc.*`` in format 2); otherwise the file is refused
with the missing and unexpected keys named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mcl_video.errors import DataError
from mcl_video.models import build_backbone
from mcl_video.training.checkpoint import safe_load

# where the query encoder's backbone lives inside the MCL state dict, most specific first
QUERY_BACKBONE_PREFIXES = (
    "encoder_q.backbone.",
    "query_encoder.backbone.",
    "encoder_q.",
    "backbone_q.",
    "backbone.",
)


ENCODER_FORMAT = "mcl-encoder"  # the ``format`` entry of an ``mcl export --format mcl`` file
CLIP_KEYS = ("clip_len", "stride", "size")
# evaluation's clip settings when neither the command nor the file gives them
DEFAULT_CLIP = {"clip_len": 16, "stride": 2, "size": 112}


class EncoderLoadError(DataError, ValueError):
    """The checkpoint does not fit the backbone; the message names the offending keys."""


@dataclass
class EncoderSettings:
    """What an encoder file says about its encoder: ``backbone`` (None for a plain state dict),
    ``backbone_options``, ``clip`` (``clip_len``, ``stride``, ``size`` the encoder was trained with; only
    the keys the file holds) and ``kind`` (``checkpoint``, ``encoder`` or ``state dict``)."""

    kind: str
    backbone: str | None = None
    backbone_options: dict = field(default_factory=dict)
    clip: dict = field(default_factory=dict)


def _settings_of(obj: dict) -> EncoderSettings:
    if obj.get("format") == ENCODER_FORMAT:
        return EncoderSettings("encoder", obj.get("backbone"), dict(obj.get("backbone_options") or {}),
                               {k: int(v) for k, v in (obj.get("clip") or {}).items() if k in CLIP_KEYS})
    if isinstance(obj.get("model"), dict):
        config = obj.get("config") or {}
        clip = {k: int(config[k]) for k in CLIP_KEYS if isinstance(config.get(k), int)}
        return EncoderSettings("checkpoint", config.get("backbone"),
                               dict(config.get("backbone_options") or {}), clip)
    return EncoderSettings("state dict")


def encoder_settings(path: str | Path) -> EncoderSettings:
    """Read ``path`` (any format :func:`load_encoder` accepts) and return its :class:`EncoderSettings`."""
    obj = safe_load(Path(path), "cpu", hint="pass a checkpoint of `mcl pretrain` or a torchvision state dict")
    if not isinstance(obj, dict):
        raise EncoderLoadError(f"{path}: expected a dict (checkpoint or state dict), "
                               f"got {type(obj).__name__}")
    return _settings_of(obj)


def clip_settings(settings: EncoderSettings | None, **given: int | None) -> tuple[dict, str]:
    """The evaluation's ``clip_len``, ``stride`` and ``size``: each from ``given`` when not None, else
    from the encoder's ``settings.clip``, else :data:`DEFAULT_CLIP`.

    Returns:
        ``(values, note)``: the three values and one line saying where each came from, e.g.
        ``"clip settings: clip_len 8, stride 2, size 32 from the checkpoint's config"``.
    """
    unknown = set(given) - set(CLIP_KEYS)
    if unknown:
        raise TypeError(f"clip_settings: unknown settings {sorted(unknown)}")
    saved = settings.clip if settings is not None else {}
    values, origin = {}, {}
    for key in CLIP_KEYS:
        if given.get(key) is not None:
            values[key], origin[key] = int(given[key]), "given"
        elif key in saved:
            values[key], origin[key] = saved[key], f"the {settings.kind}'s config"
        else:
            values[key], origin[key] = DEFAULT_CLIP[key], "default"
    groups: dict[str, list[str]] = {}
    for key in CLIP_KEYS:
        groups.setdefault(origin[key], []).append(f"{key} {values[key]}")
    parts = [f"{', '.join(items)} {'from ' + where if where.startswith('the ') else '(' + where + ')'}"
             for where, items in groups.items()]
    return values, "clip settings: " + "; ".join(parts)


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _query_backbone_state(path: Path, model_state: dict) -> dict:
    state = model_state
    if all(k.startswith("module.") for k in state):
        state = _strip(state, "module.")
    for prefix in QUERY_BACKBONE_PREFIXES:
        sub = _strip(state, prefix)
        if sub:
            return sub
    tops = sorted({k.split(".")[0] for k in state})
    raise EncoderLoadError(
        f"{path}: no query-encoder backbone in the checkpoint's 'model' (looked for key prefixes "
        f"{list(QUERY_BACKBONE_PREFIXES)}; top-level names present: {tops[:10]})"
    )


def _plain_state(path: Path, obj: dict) -> dict:
    state = obj.get("state_dict", obj) if isinstance(obj.get("state_dict"), dict) else obj
    if state and all(k.startswith("module.") for k in state):
        state = _strip(state, "module.")
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def check_keys(path, model: torch.nn.Module, state: dict, show: int = 5) -> None:
    """Raise :class:`EncoderLoadError` unless ``state`` has exactly ``model``'s keys and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        raise EncoderLoadError(
            f"{path}: keys do not fit backbone {type(model).__name__}: "
            f"{len(missing)} missing (e.g. {missing[:show]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:show]}), {len(mismatched)} with other shapes (e.g. {mismatched[:show]}). "
            "Pass the backbone the checkpoint was trained with (backbone=..., options) or check the file."
        )


def load_encoder(
    path: str | Path,
    backbone: str | None = None,
    map_location: str | torch.device = "cpu",
    **options,
) -> torch.nn.Module:
    """Build the backbone and load its weights from ``path``; returned in eval mode.

    Args:
        path: a pretraining checkpoint (``model`` + ``config``), an ``mcl export --format mcl`` encoder
            file or a torchvision-format state dict.
        backbone: backbone name for ``build_backbone``; defaults to the checkpoint's
            ``config["backbone"]``, or ``"r2plus1d_18"`` for a plain state dict.
        **options: extra ``build_backbone`` options (override the checkpoint's ``backbone_options``).
    Returns:
        the backbone (``forward(x)``: ``B x 3 x T x H x W`` -> ``B x num_features``), in eval mode.
    Raises:
        EncoderLoadError: when the keys or shapes do not fit, naming a few missing and unexpected keys.
        CheckpointError: when ``path`` is missing, empty, not a torch file or holds Python objects.
    """
    path = Path(path)
    hint = "pass a checkpoint of `mcl pretrain` or a torchvision state dict"
    obj = safe_load(path, map_location, hint=hint)
    if not isinstance(obj, dict):
        raise EncoderLoadError(
            f"{path}: expected a dict (checkpoint or state dict), got {type(obj).__name__}"
        )
    if obj.get("format") == ENCODER_FORMAT:
        saved = _settings_of(obj)
        name = backbone or saved.backbone
        opts = dict(saved.backbone_options) if name == saved.backbone else {}
        opts.update(options)
        state = obj.get("state_dict") or {}
    elif isinstance(obj.get("model"), dict):
        config = obj.get("config") or {}
        name = backbone or config.get("backbone")
        if not name:
            raise EncoderLoadError(f"{path}: the checkpoint's config names no backbone; pass backbone=NAME")
        # the checkpoint's options only describe its own backbone; 2D inflation weights ("weights")
        # are already inside the trained state
        same = name == config.get("backbone")
        opts = {k: v for k, v in (config.get("backbone_options") or {}).items() if same and k != "weights"}
        opts.update(options)
        state = _query_backbone_state(path, obj["model"])
    else:
        name, opts = backbone or "r2plus1d_18", dict(options)
        state = _plain_state(path, obj)
    try:
        model = build_backbone(name, **opts)
    except (ValueError, TypeError) as err:  # unknown name or option
        raise EncoderLoadError(f"{path}: cannot build backbone {name!r} with options {opts} ({err}); pass "
                               "the backbone the checkpoint was trained with") from None
    check_keys(path, model, state)
    model.load_state_dict(state, strict=True)
    return model.eval()
