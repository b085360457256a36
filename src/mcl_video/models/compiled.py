"""``torch.compile`` of MCL that keeps the motion alignment loss: compiled regions around ``X``.

The alignment loss differentiates ``l_pos`` with respect to ``X`` (the captured output of the
backbone's alignment layer) with ``create_graph=True``, and then back-propagates through that gradient.
Compiling the whole forward fails: ``X`` is an intermediate of one compiled graph, invisible to
``autograd.grad`` ("the differentiated Tensor ... appears to not have been used in the graph"), and a
compiled graph's backward cannot itself be differentiated (double backward). So:

- **query encoder**: every module that runs *before* ``X`` is compiled, each as its own region, so
  ``X`` is an ordinary eager tensor at the boundary; the path from ``X`` to ``l_pos`` (the rest of the
  last residual block, the pooling, the heads), which the double backward goes through, stays eager.
  Walking the dotted path of ``alignment_layer`` from the backbone down, each level compiles the
  children registered before the one on the path (torchvision and this package's backbones register
  their children in execution order); the alignment module's own children are compiled too (its
  output, ``X``, is what the capture hook on it sees);
- **key encoder**: no gradient at all, so it is compiled whole (it runs 3 clips per sample, the query 1).

``nn.Module.compile`` is used (in place): parameter and buffer names, hence checkpoints, are unchanged.
"""

from __future__ import annotations

from torch import nn


def upstream_modules(backbone: nn.Module, alignment_layer: str) -> list[str]:
    """Dotted names of the modules of ``backbone`` that run before ``alignment_layer``'s output."""
    names, prefix, module = [], "", backbone
    for part in alignment_layer.split("."):
        children = list(module.named_children())
        if part not in dict(children):
            raise ValueError(f"alignment layer {alignment_layer!r}: {type(module).__name__} has no {part!r}")
        for name, _ in children:
            if name == part:
                break
            names.append(prefix + name)
        prefix, module = prefix + part + ".", module.get_submodule(part)
    names.extend(prefix + name for name, _ in module.named_children())
    return names


def compile_mcl(model: nn.Module, **options) -> list[str]:
    """Compile ``model`` (an :class:`~mcl_video.models.mcl.MCL`) in place as described above; returns
    the names of the compiled modules. ``options`` go to ``torch.compile`` (e.g. ``mode``)."""
    compiled = []
    backbone = model.encoder_q.backbone
    for name in upstream_modules(backbone, backbone.alignment_layer):
        backbone.get_submodule(name).compile(**options)
        compiled.append(f"encoder_q.backbone.{name}")
    model.encoder_k.compile(**options)
    compiled.append("encoder_k")
    return compiled
