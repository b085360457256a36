"""Export a trained encoder: for torchvision, mmaction2, ONNX runtimes, or as a self-describing file.

- ``torchvision``: the backbone's state dict under torchvision's own names (our R(2+1)D-18 / R3D-18 *are*
  torchvision's modules), without ``fc``. ``torchvision.models.video.r2plus1d_18()`` /
  ``r3d_18()`` load it with ``strict=False`` missing exactly ``fc.weight`` and ``fc.bias``; with
  ``model.fc = nn.Identity()`` the model returns the same pooled features as ours.
- ``mmaction2``: the same tensors under the names of mmaction2's ``ResNet3d`` backbone (``conv1.conv`` /
  ``conv1.bn`` for the stem, ``layerL.B.convK.conv`` / ``.bn``, ``.conv.conv_s`` / ``.conv.bn_s`` /
  ``.conv.conv_t`` inside a (2+1)D conv, ``downsample.conv`` / ``downsample.bn``), saved as
  ``{"state_dict": ..., "meta": ...}`` with the backbone settings that reproduce our network in
  ``meta["mmaction2_backbone"]``.

  R3D-18 maps one to one. R(2+1)D-18 is mmaction2's ``ResNet3d`` with (2+1)D convs: its own
  ``ResNet2Plus1d`` always applies the stem max-pool (it ignores ``with_pool1=False``), so the export
  names ``ResNet3d``. Where mmaction2's ``Conv2plus1d`` has more middle channels (the stem: 83 vs 45;
  the second conv of each stage's first block: 288/576/1152 vs 230/460/921) ours are copied and the rest
  are zeroed, BN scale included, so the conv computes exactly the same function. A 1x1x1 shortcut
  projection, though, becomes a (2+1)D conv with a ReLU and fewer middle channels than inputs in
  mmaction2 (54/109/219 for 64/128/256), which cannot hold torchvision's projection: the export names
  the conv type ``MCLConv2plus1d`` (``mcl_video.mmaction2_conv``: mmaction2's ``Conv2plus1d``, and a
  plain ``Conv3d`` for a 1x1x1 kernel), which an mmaction2 config brings in through ``custom_imports``;
  the shortcut tensors are then exported as they are. mmaction2 has no P3D ResNet (its ``ResNet3d``
  inflates one block type per stage; P3D cycles three), so ``p3d_resnet50`` is not exported to it.
- ``onnx``: the frozen encoder as a feature extractor (input ``clip`` ``B x 3 x T x H x W`` float,
  output ``features`` ``B x num_features``), batch size dynamic; any backbone.
- ``mcl``: ``{"format": "mcl-encoder", "backbone", "backbone_options", "state_dict", "clip"}``, the query
  encoder alone with what builds it and the clip settings it was trained with; any backbone;
  :func:`mcl_video.load_encoder` and ``hubconf.py`` read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mcl_video.atomic import atomic_path
from mcl_video.errors import UsageError
from mcl_video.evaluation.encoder import ENCODER_FORMAT, clip_settings, encoder_settings, load_encoder

FORMATS = ("torchvision", "mmaction2", "onnx", "mcl")
EXPORTABLE = ("r2plus1d_18", "r3d_18")  # to torchvision and mmaction2; onnx and mcl take any backbone
ONNX_OPSET = 18
# the conv type (registered by mcl_video.mmaction2_conv) that holds R(2+1)D-18's 1x1x1 shortcuts
MMACTION2_CONV = "MCLConv2plus1d"
MMACTION2_PLUGIN = "mcl_video.mmaction2_conv"
HINT = "free space or choose another --out, then rerun"
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
        type="ResNet3d", depth=18, pretrained2d=False, conv1_kernel=(3, 7, 7), conv1_stride_t=1,
        pool1_stride_t=1, with_pool1=False, with_pool2=False, inflate=(1, 1, 1, 1),
        spatial_strides=(1, 2, 2, 2), temporal_strides=(1, 2, 2, 2), conv_cfg=dict(type=MMACTION2_CONV),
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
    """Our tensors under the names of mmaction2's ``ResNet3d`` (with ``MCLConv2plus1d`` convs for
    R(2+1)D-18, see the module docstring).

    Returns:
        ``(state, not_exported)``: the mmaction2 state dict and our keys without a counterpart (none for
        R3D-18 and R(2+1)D-18).
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
        if f"{block}.downsample.0.weight" in src:  # a 1x1x1 conv in both (MCLConv2plus1d keeps it)
            out[f"{block}.downsample.conv.weight"] = src[f"{block}.downsample.0.weight"]
            _copy_bn(out, src, f"{block}.downsample.1", f"{block}.downsample.bn")
    return out, not_exported


def _py(value) -> str:
    """``value`` as Python source in the style of mmaction2 configs (``dict(type=...)`` for dicts)."""
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={_py(v)}" for k, v in value.items()) + ")"
    return repr(value)


def mmaction2_config(arch: str, weights: str | Path, num_classes: int = 101) -> str:
    """The mmaction2 1.x config text (``model`` and, for R(2+1)D-18, ``custom_imports``) that builds our
    network from an ``mcl export --format mmaction2`` file ``weights``: a ``Recognizer3D`` with the
    backbone of :data:`MMACTION2_BACKBONES` and an ``I3DHead``."""
    backbone = dict(MMACTION2_BACKBONES[arch])
    backbone = {"type": backbone.pop("type"), "depth": backbone.pop("depth"), "pretrained": str(weights),
                **backbone}
    lines = []
    if arch == "r2plus1d_18":
        lines.append(f"custom_imports = dict(imports=[{MMACTION2_PLUGIN!r}], allow_failed_imports=False)")
    items = ",\n        ".join(f"{k}={_py(v)}" for k, v in backbone.items())
    lines += [
        "model = dict(",
        '    type="Recognizer3D",',
        f"    backbone=dict(\n        {items}),",
        f'    cls_head=dict(type="I3DHead", num_classes={num_classes}, in_channels=512, dropout_ratio=0.5),',
        '    data_preprocessor=dict(type="ActionDataPreprocessor", mean=[123.675, 116.28, 103.53],',
        '                           std=[58.395, 57.12, 57.375], format_shape="NCTHW"))',
    ]
    return "\n".join(lines) + "\n"


def export_onnx(model: nn.Module, out: Path, clip_len: int, size: int, opset: int = ONNX_OPSET) -> None:
    """Write ``model`` (eval mode, CPU) to ``out`` as ONNX with torch's exporter (``dynamo=True``; needs
    the ``onnx`` extra): input ``clip`` ``B x 3 x clip_len x size x size``, output ``features``; the batch
    dimension is dynamic (time and space are fixed by the trace)."""
    import contextlib
    import io
    import logging

    try:
        import onnxscript  # noqa: F401 - torch's ONNX exporter needs it
    except ImportError:
        raise UsageError("export --format onnx needs onnx and onnxscript: "
                         "pip install 'mcl-video[onnx]'") from None
    model = model.eval().cpu()
    example = torch.zeros(2, 3, clip_len, size, size)  # batch 2: a batch of 1 would be specialised
    batch = torch.export.Dim("batch")
    chatter = io.StringIO()  # the exporter prints its progress, and logs its passes at INFO
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet = contextlib.redirect_stdout(chatter)
    with atomic_path(out, HINT, keep_suffix=True) as tmp, torch.no_grad(), quiet:
        torch.onnx.export(model, (example,), str(tmp), input_names=["clip"], output_names=["features"],
                          dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, external_data=False)


def export_encoder(
    checkpoint: str | Path, fmt: str, out: str | Path, backbone: str | None = None,
    clip_len: int | None = None, size: int | None = None,
) -> ExportResult:
    """Load the query encoder of ``checkpoint`` (see :func:`load_encoder`) and write it in format
    ``fmt`` (one of :data:`FORMATS`) to ``out`` (temp file, then rename).

    ``clip_len`` and ``size`` (ONNX's traced input and the ``mcl`` file's clip settings) default to the
    checkpoint's config (else 16 and 112)."""
    if fmt not in FORMATS:
        raise UsageError(f"export: --format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    settings = encoder_settings(checkpoint)
    model = load_encoder(checkpoint, backbone=backbone)
    arch = backbone_arch(model) if fmt in ("torchvision", "mmaction2") else _backbone_name(model, settings,
                                                                                           backbone)
    meta = {"source": str(checkpoint), "arch": arch, "format": fmt}
    clip, _ = clip_settings(settings, clip_len=clip_len, size=size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    not_exported: list[str] = []
    if fmt == "onnx":
        export_onnx(model, out, clip["clip_len"], clip["size"])
        state = {k: v.detach() for k, v in model.state_dict().items()}
        meta.update(input_shape=["batch", 3, clip["clip_len"], clip["size"], clip["size"]],
                    num_features=int(model.num_features))
        return ExportResult(out, fmt, arch, state, not_exported, meta)
    if fmt == "torchvision":
        state = torchvision_state(model)
        payload: dict = state
    elif fmt == "mmaction2":
        state, not_exported = mmaction2_state(model)
        meta.update(mmaction2_backbone=MMACTION2_BACKBONES[arch], not_exported=not_exported)
        if arch == "r2plus1d_18":
            meta["custom_imports"] = [MMACTION2_PLUGIN]
        payload = {"state_dict": state, "meta": meta}
    else:  # mcl
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        same = settings.backbone == arch
        payload = {"format": ENCODER_FORMAT, "backbone": arch,
                   "backbone_options": dict(settings.backbone_options) if same else {},
                   "state_dict": state, "clip": clip, "meta": meta}
    with atomic_path(out, HINT) as tmp:
        torch.save(payload, tmp)
    return ExportResult(out, fmt, arch, state, not_exported, meta)


def _backbone_name(model: nn.Module, settings, given: str | None) -> str:
    return given or settings.backbone or getattr(model, "arch", None) or "r2plus1d_18"
