"""``load_encoder``: a backbone ready for feature extraction from a checkpoint file.

Two formats are accepted (both read with ``torch.load(weights_only=True)``):

1. our pretraining checkpoints (``mcl_video.training``): a dict with ``model`` (the MCL state dict)
   and ``config`` (``backbone``, ``backbone_options``); the *query* encoder's backbone is taken;
2. a torchvision-format video ResNet state dict (R(2+1)D-18 by default), plain or under
   ``state_dict``, with or without the classifier ``fc.*`` (and with or without a DDP ``module.``
   prefix).

Keys must fit the backbone exactly (apart from ``fc.*`` in format 2); otherwise the file is refused
with the missing and unexpected keys named.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mcl_video.errors import DataError
from mcl_video.models import build_backbone
from mcl_video.torchfile import CheckpointError, describe_non_finite, non_finite_tensors, safe_load

# where the query encoder's backbone lives inside the MCL state dict, most specific first
QUERY_BACKBONE_PREFIXES = (
    "encoder_q.backbone.",
    "query_encoder.backbone.",
    "encoder_q.",
    "backbone_q.",
    "backbone.",
)


class EncoderLoadError(DataError, ValueError):
    """The checkpoint does not fit the backbone; the message names the offending keys."""


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def saved_settings(config: dict) -> dict:
    """A checkpoint's config as ``{key: value}`` by short name, whether it is nested by section (today's
    format: ``{"model": {"backbone": ...}, "sampling": {...}}``) or flat (earlier versions)."""
    if isinstance(config.get("model"), dict) and "backbone" in config["model"]:
        return {k: v for section in config.values() if isinstance(section, dict) for k, v in section.items()}
    return dict(config)


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
        path: a pretraining checkpoint (``model`` + ``config``) or a torchvision-format state dict.
        backbone: backbone name for ``build_backbone``; defaults to the checkpoint's
            ``config["backbone"]``, or ``"r2plus1d_18"`` for a plain state dict.
        **options: extra ``build_backbone`` options (override the checkpoint's ``backbone_options``).
    Returns:
        the backbone (``forward(x)``: ``B x 3 x T x H x W`` -> ``B x num_features``), in eval mode.
    Raises:
        EncoderLoadError: when the keys or shapes do not fit, naming a few missing and unexpected keys.
        CheckpointError: when ``path`` is missing, empty, not a torch file, holds Python objects, or its
            weights hold NaN/inf.
    """
    path = Path(path)
    hint = "pass a checkpoint of `mcl pretrain` or a torchvision state dict"
    obj = safe_load(path, map_location, hint=hint)
    if not isinstance(obj, dict):
        raise EncoderLoadError(
            f"{path}: expected a dict (checkpoint or state dict), got {type(obj).__name__}"
        )
    if isinstance(obj.get("model"), dict):
        config = saved_settings(obj.get("config") or {})
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
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(f"{path}: the encoder's weights hold NaN/inf ({describe_non_finite(bad)}), so "
                              "every feature would be NaN: the run diverged; use an earlier checkpoint")
    model.load_state_dict(state, strict=True)
    return model.eval()
