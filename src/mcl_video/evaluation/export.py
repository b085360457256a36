"""Export a trained encoder for other toolkits: torchvision and mmaction2.

- ``torchvision``: the backbone's state dict under torchvision's own names (our R(2+1)D-18 / R3D-18 *are*
  torchvision's modules), without ``fc``. ``torchvision.models.video.r2plus1d_18()`` /
  ``r3d_18()`` load it with ``strict=False`` missing exactly ``fc.weight`` and ``fc.bias``; with
  ``model.fc = nn.Identity()`` the model returns the same pooled features as ours.
- ``mmaction2``: the same tensors under the names of mmaction2's ``ResNet3d`` (R3D-18) and
  ``ResNet2Plus1d`` (R(2+1)D-18) backbones (``conv1.conv`` / ``conv1.bn`` for the stem,
  ``layerL.B.convK.conv`` / ``.bn``, ``.conv.conv_s`` / ``.conv.bn_s`` / ``.conv.conv_t`` inside a
  (2+1)D conv, ``downsample.conv`` / ``downsample.bn``), saved as ``{"state_dict": ..., "meta": ...}``
  with the backbone settings that reproduce our network in ``meta["mmaction2_backbone"]``.

  R3D-18 maps one to one. For R(2+1)D-18 mmaction2 sizes the middle of each (2+1)D conv differently:
  where it has more middle channels (the stem: 83 vs 45; the second conv of each stage's first block:
  288/576/1152 vs 230/460/921) ours are copied and the rest are zeroed, BN scale included, so the conv
  computes exactly the same function. Its shortcut projections, though, are (2+1)D convs with a ReLU and
  fewer middle channels than inputs (54/109/219 for 64/128/256), which cannot represent torchvision's
  1x1x1 projection: those keys are not exported (listed in ``meta["not_exported"]``) and mmaction2
  initialises them; fine-tuning relearns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mcl_video.errors import RunFailedError, UsageError
from mcl_video.evaluation.encoder import load_encoder
from mcl_video.torchfile import describe_non_finite, non_finite_tensors, save_atomic

FORMATS = ("torchvision", "mmaction2")
EXPORTABLE = ("r2plus1d_18", "r3d_18")
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# mmaction2 backbone settings under which its network matches ours (the exported weights' ``meta``)
MMACTION2_BACKBONES = {
    "r3d_18": dict(
        type="ResNet3d", depth=18, pretrained2d=False, conv1_kernel=(3, 7, 7), conv1_stride_t=1,
        pool1_stride_t=1, with_pool1=False, with_pool2=False, inflate=(1, 1, 1, 1),
        spatial_strides=(1, 2, 2, 2), temporal_strides=(1, 2, 2, 2), norm_cfg=dict(type="BN3d"),
        zero_init_residual=False,
    ),
    "r2plus1d_18": dict(
        type="ResNet2Plus1d", depth=18, pretrained2d=False, conv1_kernel=(3, 7, 7), conv1_stride_t=1,
        pool1_stride_t=1, with_pool1=False, with_pool2=False, inflate=(1, 1, 1, 1),
        spatial_strides=(1, 2, 2, 2), temporal_strides=(1, 2, 2, 2), conv_cfg=dict(type="Conv2plus1d"),
        norm_cfg=dict(type="BN3d"), zero_init_residual=False,
    ),
}


@dataclass
class ExportResult:
    """What :func:`export_encoder` wrote: ``state`` (the exported tensors), ``not_exported`` (our keys
    without a counterpart in the target), ``meta`` (stored next to the tensors)."""

    path: Path
    format: str
    arch: str
    state: dict[str, torch.Tensor]
    not_exported: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def backbone_arch(backbone: nn.Module) -> str:
    """``r2plus1d_18`` / ``r3d_18`` for an exportable backbone, else a :class:`UsageError`."""
    arch = getattr(backbone, "arch", None)
    if arch not in EXPORTABLE:
        raise UsageError(
            f"export: backbone {arch or type(backbone).__name__} has no torchvision/mmaction2 counterpart; "
            f"export works for {', '.join(EXPORTABLE)} (load other backbones with mcl_video.load_encoder)"
        )
    return arch


def torchvision_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Our backbone's tensors under torchvision's names (they are the same modules), no ``fc``."""
    backbone_arch(backbone)
    return {k: v.detach().clone().contiguous() for k, v in backbone.state_dict().items()}


def _copy_bn(out: dict, src: dict, ours: str, theirs: str) -> None:
    for name in BN_KEYS:
        out[f"{theirs}.{name}"] = src[f"{ours}.{name}"]


def _conv2plus1d(out: dict, src: dict, spatial: str, bn: str, temporal: str, theirs: str) -> None:
    """torchvision's (2+1)D conv (``spatial`` conv, ``bn``, ReLU, ``temporal`` conv) as mmaction2's
    ``Conv2plus1d`` ``theirs`` (``conv_s``, ``bn_s``, ``conv_t``). mmaction2 may have more middle
    channels (its rule counts a block's own width where torchvision reuses the first conv's): the extra
    channels get zero weights and a zero BN scale and shift, so they output exactly 0."""
    w_s, w_t = src[spatial], src[temporal]
    have = w_s.shape[0]
    mid = mmaction2_mid_channels(w_s.shape[1], w_t.shape[0], (w_t.shape[2], w_s.shape[3], w_s.shape[4]))
    if mid < have:  # never for R(2+1)D-18; would need dropping channels
        raise ValueError(f"{theirs} has {mid} middle channels in mmaction2, ours {have}")
    extra = mid - have
    out[f"{theirs}.conv_s.weight"] = torch.cat([w_s, w_s.new_zeros((extra, *w_s.shape[1:]))])
    out[f"{theirs}.conv_t.weight"] = torch.cat([w_t, w_t.new_zeros((w_t.shape[0], extra, *w_t.shape[2:]))], 1)
    fill = {"weight": 0.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
    for name, value in fill.items():
        v = src[f"{bn}.{name}"]
        out[f"{theirs}.bn_s.{name}"] = torch.cat([v, torch.full((extra,), value, dtype=v.dtype)])
    out[f"{theirs}.bn_s.num_batches_tracked"] = src[f"{bn}.num_batches_tracked"]


def mmaction2_mid_channels(cin: int, cout: int, kernel: tuple[int, int, int]) -> int:
    """Middle channels of mmaction2's ``Conv2plus1d``: ``int(3 cin cout kh kw / (cin kh kw + 3 cout))``
    (the R(2+1)D paper's parameter-matching rule with a temporal kernel of 3)."""
    return int(3 * cin * cout * kernel[1] * kernel[2] / (cin * kernel[1] * kernel[2] + 3 * cout))


def mmaction2_state(backbone: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Our tensors under mmaction2's ``ResNet3d`` / ``ResNet2Plus1d`` names.

    Returns:
        ``(state, not_exported)``: the mmaction2 state dict and our keys that have no exact counterpart
        (R(2+1)D-18's shortcut projections, see the module docstring).
    """
    arch = backbone_arch(backbone)
    src = {k: v.detach().clone().contiguous() for k, v in backbone.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    not_exported: list[str] = []
    two_plus_one = arch == "r2plus1d_18"
    if two_plus_one:
        _conv2plus1d(out, src, "stem.0.weight", "stem.1", "stem.3.weight", "conv1.conv")
        _copy_bn(out, src, "stem.4", "conv1.bn")
    else:
        out["conv1.conv.weight"] = src["stem.0.weight"]
        _copy_bn(out, src, "stem.1", "conv1.bn")
    blocks = sorted({".".join(k.split(".")[:2]) for k in src if k.startswith("layer")})
    for block in blocks:  # "layerL.B"
        for conv in ("conv1", "conv2"):
            ours, theirs = f"{block}.{conv}", f"{block}.{conv}"
            if two_plus_one:
                _conv2plus1d(
                    out, src, f"{ours}.0.0.weight", f"{ours}.0.1", f"{ours}.0.3.weight", f"{theirs}.conv"
                )
            else:
                out[f"{theirs}.conv.weight"] = src[f"{ours}.0.weight"]
            _copy_bn(out, src, f"{ours}.1", f"{theirs}.bn")
        if f"{block}.downsample.0.weight" in src:
            shortcut = [k for k in src if k.startswith(f"{block}.downsample.")]
            if two_plus_one:
                not_exported += sorted(shortcut)
            else:
                out[f"{block}.downsample.conv.weight"] = src[f"{block}.downsample.0.weight"]
                _copy_bn(out, src, f"{block}.downsample.1", f"{block}.downsample.bn")
    return out, not_exported


def export_encoder(
    checkpoint: str | Path, fmt: str, out: str | Path, backbone: str | None = None
) -> ExportResult:
    """Load the query encoder of ``checkpoint`` (see :func:`load_encoder`) and write it in format
    ``fmt`` (``torchvision`` or ``mmaction2``) to ``out`` through ``mcl_video.atomic.atomic_path``
    (complete or absent: no temporary file is left on any error). ``out`` may not be a folder, and
    weights holding NaN/inf are not exported."""
    if fmt not in FORMATS:
        raise UsageError(f"export: --format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; name the file to write, e.g. --out {out / 'encoder.pth'}")
    model = load_encoder(checkpoint, backbone=backbone)
    arch = backbone_arch(model)
    meta = {"source": str(checkpoint), "arch": arch, "format": fmt}
    if fmt == "torchvision":
        state, not_exported = torchvision_state(model), []
        payload: dict = state
    else:
        state, not_exported = mmaction2_state(model)
        meta.update(mmaction2_backbone=MMACTION2_BACKBONES[arch], not_exported=not_exported)
        payload = {"state_dict": state, "meta": meta}
    bad = non_finite_tensors(state)
    if bad:
        raise RunFailedError(f"{checkpoint}: the encoder's weights hold NaN/inf "
                             f"({describe_non_finite(bad)}); nothing was written to {out}: export an "
                             "earlier checkpoint")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {out}: cannot create its folder ({err.strerror}); choose a folder you can "
                         "write to") from None
    save_atomic(payload, out, "free space and run `mcl export` again")
    return ExportResult(out, fmt, arch, state, not_exported, meta)
