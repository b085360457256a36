"""Batched photometric augmentation (colour, blur) on the training device, after the batch's transfer.

The dataset draws every parameter and applies the geometric part on its worker (crop, resize, flip:
uint8 views); this module applies the rest to a whole batch at once, each sample with its own drawn
parameters: colour jitter (brightness, contrast, saturation, hue in the sample's order), grayscale,
Gaussian blur and the ImageNet normalisation. For the same parameters it computes what
:meth:`ClipAugment.apply <mcl_video.sampling.augment.ClipAugment.apply>` computes per sample (the
flip, done earlier here, commutes with every photometric step), to float rounding.

Parameters per view (the item's ``photometric[view]``, stacked by ``default_collate``):
``jitter_order`` long ``B x 4`` (indices into ``JITTER_NAMES`` in application order, ``-1`` = none),
``jitter_factors`` float ``B x 4`` (brightness, contrast, saturation, hue), ``grayscale`` bool ``B``,
``blur_sigma`` float ``B`` (``0`` = no blur).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf

from mcl_video.sampling.augment import IMAGENET_MEAN, IMAGENET_STD, JITTER_NAMES, AugmentParams

LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
PHOTOMETRIC_KEY = "photometric"  # the item's key of the drawn parameters


def photometric_params(params: AugmentParams) -> dict[str, torch.Tensor]:
    """One view's photometric parameters as tensors (what the dataset puts in its item)."""
    order = torch.full((4,), -1, dtype=torch.long)
    factors = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float32)
    for position, (name, factor) in enumerate(params.jitter):
        kind = JITTER_NAMES.index(name)
        order[position] = kind
        factors[kind] = factor
    sigma = 0.0 if params.blur_sigma is None else float(params.blur_sigma)
    return {"jitter_order": order, "jitter_factors": factors,
            "grayscale": torch.tensor(bool(params.grayscale)),
            "blur_sigma": torch.tensor(sigma, dtype=torch.float32)}


def augment_batch(batch: dict, normalize: bool = True) -> dict:
    """Replace each uint8 view of a batch by its augmented float view; drops the parameters.

    ``batch[PHOTOMETRIC_KEY]`` maps view names to parameter dicts (on any device); the views
    ``B x C x T x H x W`` are on the device the work should run on. Batches without parameters
    (already augmented) are returned unchanged.
    """
    if PHOTOMETRIC_KEY not in batch:
        return batch
    out = dict(batch)
    for view, params in out.pop(PHOTOMETRIC_KEY).items():
        out[view] = photometric(out[view], params, normalize)
    return out


def augment_item(item: dict, normalize: bool = True) -> dict:
    """:func:`augment_batch` for one dataset item (views ``C x T x H x W``), on the item's device."""
    if PHOTOMETRIC_KEY not in item:
        return item
    out = {k: v for k, v in item.items() if k != PHOTOMETRIC_KEY}
    for view, params in item[PHOTOMETRIC_KEY].items():
        batched = {k: v.unsqueeze(0) for k, v in params.items()}
        out[view] = photometric(item[view].unsqueeze(0), batched, normalize)[0]
    return out


@torch.no_grad()
def photometric(views: torch.Tensor, params: dict, normalize: bool = True) -> torch.Tensor:
    """Augment ``B x 3 x T x H x W`` views (uint8, or float in [0, 1]) -> float32, same shape."""
    if views.ndim != 5 or views.shape[1] != 3:
        raise ValueError(f"sampling/photometric.py: views must be B x 3 x T x H x W, "
                         f"got {tuple(views.shape)}")
    x = views.float().div_(255.0) if views.dtype == torch.uint8 else views.float().clone()
    order = params["jitter_order"].cpu()  # indices are chosen on the host: no device syncs
    factors = params["jitter_factors"].to(x.device, torch.float32)
    for position in range(order.shape[1]):
        for kind, name in enumerate(JITTER_NAMES):
            rows = (order[:, position] == kind).nonzero().flatten()
            if len(rows):
                idx = rows.to(x.device)
                x[idx] = _JITTER[name](x[idx], factors[idx, kind])
    gray = params["grayscale"].cpu().nonzero().flatten()
    if len(gray):
        idx = gray.to(x.device)
        x[idx] = _luma(x[idx]).expand(-1, 3, -1, -1, -1)
    sigma = params["blur_sigma"].cpu().double()
    blurred = (sigma > 0).nonzero().flatten()
    if len(blurred):
        idx = blurred.to(x.device)
        x[idx] = gaussian_blur(x[idx], sigma[blurred])
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1, 1)
        x = x.sub_(mean).div_(std)
    return x


def _per_sample(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """``B x 3 x T x H x W`` -> ``B x 1 x T x H x W`` grayscale."""
    return (x[:, 0:1] * LUMA[0]).add_(x[:, 1:2], alpha=LUMA[1]).add_(x[:, 2:3], alpha=LUMA[2])


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    r = _per_sample(ratio)
    return (x * r).add_(other * (1.0 - r)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * _per_sample(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean gray level of each frame (torchvision's per-image contrast)."""
    return _blend(x, _luma(x).mean(dim=(-2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _luma(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of every pixel by the sample's ``shift`` (in turns, [-0.5, 0.5]).

    Value (the largest channel) and saturation stay; with ``h6`` the new hue in sixths and
    ``delta = max - min``, channel ``n`` (5, 3, 1 for red, green, blue) is
    ``max - delta * clamp(min(k, 4 - k), 0, 1)``, ``k = (n + h6) mod 6``: the closed form of the
    HSV-to-RGB sector table, in a few element-wise passes.
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    maxc = torch.maximum(torch.maximum(r, g), b)  # B x 1 x T x H x W
    delta = maxc - torch.minimum(torch.minimum(r, g), b)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)  # gray pixels: any hue, delta 0
    sixths = torch.where(maxc == r, g - b, torch.where(maxc == g, (b - r).add_(delta, alpha=2.0),
                                                       (r - g).add_(delta, alpha=4.0)))
    h6 = sixths.div_(safe).add_(6.0 * shift.view(-1, 1, 1, 1, 1)).remainder_(6.0)
    k = (h6 + _HUE_OFFSETS.to(x.device)).remainder_(6.0)  # B x 3 x T x H x W
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc - ramp.mul_(delta)


_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1, 1)

_JITTER = {"brightness": adjust_brightness, "contrast": adjust_contrast,
           "saturation": adjust_saturation, "hue": adjust_hue}


def blur_kernel_size(sigma: float, side: int) -> int:
    """Kernel side ``2 * ceil(3 sigma) + 1``, at most the largest odd number <= ``side``."""
    return min(2 * math.ceil(3 * sigma) + 1, side if side % 2 else side - 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each sample of ``B x C x T x H x W`` with its own sigma (``B``, pixels), separably.

    Each sample's kernel is torchvision's (``blur_kernel_size`` taps, normalised) padded with zero
    taps to the batch's largest; with reflect padding of that size this gives each sample's own result.
    """
    B, C, T, H, W = x.shape
    sizes = [blur_kernel_size(float(s), min(H, W)) for s in sigma]
    radius = max(sizes) // 2
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps[None] / sigma.double()[:, None]) ** 2)
    weights = weights * (taps.abs()[None] <= torch.tensor(sizes)[:, None] // 2)
    weights = (weights / weights.sum(dim=1, keepdim=True)).to(x.device, x.dtype)  # B x K
    planes = x.reshape(1, B * C * T, H, W)
    kernel = weights.repeat_interleave(C * T, dim=0)  # B*C*T x K
    k = 2 * radius + 1
    planes = nnf.pad(planes, (radius, radius, radius, radius), mode="reflect")
    planes = nnf.conv2d(planes, kernel.view(-1, 1, 1, k), groups=B * C * T)
    planes = nnf.conv2d(planes, kernel.view(-1, 1, k, 1), groups=B * C * T)
    return planes.view(B, C, T, H, W)
