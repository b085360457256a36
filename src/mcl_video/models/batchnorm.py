"""BatchNorm over groups of a batch, as that many processes would normalise them (METHOD §4).

The release trains with 8 clips per GPU: every BatchNorm layer normalises each GPU's 8 clips with their
own statistics. :class:`GroupedBatchNorm3d` does the same inside one process: in training mode the batch
is split into consecutive groups of ``group_size`` samples (the last one smaller when the batch is not a
multiple) and each group is normalised with its own mean and variance. The running statistics are
updated with the mean over the groups of the group statistics, which is the mean over the ranks of what
per-rank BatchNorms (DDP without buffer broadcast) would hold: the update is linear in the statistics.

Evaluation mode uses the running statistics, as ``nn.BatchNorm3d`` does. The state dict is
``nn.BatchNorm3d``'s (the class is a subclass), so checkpoints load either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GroupedBatchNorm3d(nn.BatchNorm3d):
    """``nn.BatchNorm3d`` whose training-mode statistics are per group of ``group_size`` samples."""

    def __init__(self, num_features: int, group_size: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if group_size < 1:
            raise ValueError(f"GroupedBatchNorm3d: group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or x.shape[0] <= self.group_size:
            return super().forward(x)
        factor = self._update_factor()
        if x.shape[0] % self.group_size == 0:
            return self._equal_groups(x, factor)
        groups = x.split(self.group_size)
        out = torch.cat([F.batch_norm(g, None, None, self.weight, self.bias, True, 0.0, self.eps)
                         for g in groups])
        if self.track_running_stats:
            with torch.no_grad():
                dims = [0, *range(2, x.dim())]
                mean = torch.stack([g.mean(dim=dims) for g in groups]).mean(0)
                var = torch.stack([g.var(dim=dims, unbiased=True) for g in groups]).mean(0)
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.to(self.running_var.dtype), alpha=factor)
        return out

    def _equal_groups(self, x: torch.Tensor, factor: float) -> torch.Tensor:
        """Groups of equal size as one BatchNorm over ``group_size`` samples of ``G * C`` channels (the
        groups side by side): one kernel instead of a loop; the running statistics are updated per
        group copy and averaged."""
        b, c, rest = x.shape[0], x.shape[1], x.shape[2:]
        g, n = self.group_size, x.shape[0] // self.group_size
        wide = x.view(n, g, c, *rest).transpose(0, 1).reshape(g, n * c, *rest)
        mean = var = None
        if self.track_running_stats:
            mean, var = self.running_mean.repeat(n), self.running_var.repeat(n)
        weight = self.weight.repeat(n) if self.weight is not None else None
        bias = self.bias.repeat(n) if self.bias is not None else None
        out = F.batch_norm(wide, mean, var, weight, bias, True, factor, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.copy_(mean.view(n, c).mean(0))
                self.running_var.copy_(var.view(n, c).mean(0))
        return out.view(g, n, c, *rest).transpose(0, 1).reshape(b, c, *rest)

    def _update_factor(self) -> float:
        """The running-statistics update weight of this forward (``_BatchNorm.forward``'s rule)."""
        if not self.track_running_stats:
            return 0.0
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            return 1.0 / float(self.num_batches_tracked)
        return float(self.momentum)


def convert_grouped_batchnorm(module: nn.Module, group_size: int) -> nn.Module:
    """Replace every ``nn.BatchNorm3d`` inside ``module`` by a :class:`GroupedBatchNorm3d` with the same
    parameters and statistics (in place; returns ``module``, or its replacement when it is one)."""
    if isinstance(module, nn.BatchNorm3d) and not isinstance(module, GroupedBatchNorm3d):
        new = GroupedBatchNorm3d(module.num_features, group_size, eps=module.eps, momentum=module.momentum,
                                 affine=module.affine, track_running_stats=module.track_running_stats,
                                 device=_device(module), dtype=_dtype(module))
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        replaced = convert_grouped_batchnorm(child, group_size)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def _device(module: nn.Module):
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None


def _dtype(module: nn.Module):
    for t in module.parameters():
        return t.dtype
    return None
