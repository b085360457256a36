"""Clip-consistent augmentation: one parameter draw, applied identically to every frame.

The draw (:meth:`ClipAugment.draw`, numpy ``Generator``) is separate from the application, so the
dataset can flip the query's alignment target with the query and tests can check that all frames got
the same treatment. Training splits the application in two: :meth:`ClipAugment.geometric` (crop,
resize, flip; uint8, on the data-loading worker) and the batched photometric part on the training
device (``sampling/photometric.py``). :meth:`ClipAugment.apply` does all of it for one clip; it is the
reference the batched path is tested against.

Order of operations: crop (source pixels) -> resize to ``size x size`` -> colour jitter (p=0.8;
brightness, contrast, saturation, hue in a random order, like torchvision's ``ColorJitter``) ->
grayscale (p=0.2; always when ``colour=False``) -> Gaussian blur (p=0.5, sigma in [0.1, 2.0], kernel
``2 * ceil(3 sigma) + 1``) -> horizontal flip (p=0.5) -> ImageNet mean/std normalisation. The flip
commutes with the photometric steps, so the geometric part may apply it first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from mcl_video.sampling.spatial import CropBox

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class AugmentParams:
    """Every random choice of one clip's augmentation.

    ``jitter``: ``((name, factor), ...)`` in application order, empty when jitter is off;
    ``blur_sigma``: ``None`` when blur is off.
    """

    crop: CropBox
    jitter: tuple[tuple[str, float], ...]
    grayscale: bool
    blur_sigma: float | None
    flip: bool


class ClipAugment:
    """Augment a clip ``T x C x H x W`` (uint8 or float in [0, 1]) to float ``T x C x size x size``.

    Args:
        size: output side in pixels (112 in our configs, 224 in the release).
        jitter: colour-jitter strengths (brightness, contrast, saturation, hue).
        jitter_p, grayscale_p, blur_p, flip_p: probabilities of each augmentation.
        blur_sigma: range of the Gaussian blur's sigma (pixels at the output size).
        colour: ``False`` removes colour cues (every clip grayscale, no hue/saturation jitter).
        normalize: apply the ImageNet mean/std normalisation.
    """

    def __init__(
        self,
        size: int = 112,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_p: float = 0.5,
        flip_p: float = 0.5,
        colour: bool = True,
        normalize: bool = True,
    ) -> None:
        for name, p in (("jitter_p", jitter_p), ("grayscale_p", grayscale_p),
                        ("blur_p", blur_p), ("flip_p", flip_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"ClipAugment: {name} must be in [0, 1], got {p}")
        if size < 1:
            raise ValueError(f"ClipAugment: size must be >= 1, got {size}")
        if not 0.0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"ClipAugment: blur_sigma must be a range of positive values, got {blur_sigma}")
        if not 0.0 <= jitter[3] <= 0.5:
            raise ValueError(f"ClipAugment: hue jitter must be in [0, 0.5], got {jitter[3]}")
        self.size = size
        self.jitter = tuple(jitter)
        self.jitter_p = jitter_p
        self.grayscale_p = grayscale_p
        self.blur_sigma = tuple(blur_sigma)
        self.blur_p = blur_p
        self.flip_p = flip_p
        self.colour = colour
        self.normalize = normalize

    def draw(self, crop: CropBox, rng: np.random.Generator) -> AugmentParams:
        """Draw one clip's parameters. Always consumes the same number of random numbers."""
        apply_jitter = rng.random() < self.jitter_p
        perm = rng.permutation(4)
        b, c, s, h = self.jitter
        factors = {
            "brightness": rng.uniform(max(0.0, 1 - b), 1 + b),
            "contrast": rng.uniform(max(0.0, 1 - c), 1 + c),
            "saturation": rng.uniform(max(0.0, 1 - s), 1 + s),
            "hue": rng.uniform(-h, h),
        }
        gray = rng.random() < self.grayscale_p
        apply_blur = rng.random() < self.blur_p
        sigma = rng.uniform(*self.blur_sigma)
        flip = rng.random() < self.flip_p
        jitter: tuple[tuple[str, float], ...] = ()
        if apply_jitter:
            names = [JITTER_NAMES[i] for i in perm]
            if not self.colour:
                names = [n for n in names if n in ("brightness", "contrast")]
            jitter = tuple((n, float(factors[n])) for n in names)
        return AugmentParams(
            crop=crop,
            jitter=jitter,
            grayscale=bool(gray or not self.colour),
            blur_sigma=float(sigma) if apply_blur else None,
            flip=bool(flip),
        )

    def apply(self, clip: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply ``params`` to every frame: ``T x C x H x W`` -> float ``T x C x size x size``."""
        x = self._crop_resize(clip, params)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        for name, factor in params.jitter:
            x = _JITTER_FNS[name](x, factor)
        if params.grayscale:
            x = F.rgb_to_grayscale(x, num_output_channels=3)
        if params.blur_sigma is not None:
            k = min(2 * math.ceil(3 * params.blur_sigma) + 1, _largest_odd(self.size))
            x = F.gaussian_blur(x, [k, k], [params.blur_sigma, params.blur_sigma])
        if params.flip:
            x = x.flip(-1)
        if self.normalize:
            x = F.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        return x

    def geometric(self, clip: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """The geometric part only: crop, resize, flip; ``T x C x size x size`` in the input's dtype."""
        x = self._crop_resize(clip, params)
        return x.flip(-1) if params.flip else x

    def _crop_resize(self, clip: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        if clip.ndim != 4 or clip.shape[1] != 3:
            raise ValueError(
                f"sampling/augment.py: ClipAugment expects T x 3 x H x W, got {tuple(clip.shape)} "
                "(permute read_clip's T x H x W x 3 output with .permute(0, 3, 1, 2))"
            )
        top, left, height, width = params.crop.as_tuple()
        x = clip[:, :, top : top + height, left : left + width]
        return F.resize(x, [self.size, self.size], antialias=True)

    def __call__(
        self, clip: torch.Tensor, crop: CropBox, rng: np.random.Generator
    ) -> tuple[torch.Tensor, AugmentParams]:
        """Draw and apply: ``(augmented T x C x size x size, params)``."""
        params = self.draw(crop, rng)
        return self.apply(clip, params), params


def _largest_odd(n: int) -> int:
    return n if n % 2 else n - 1


_JITTER_FNS = {
    "brightness": F.adjust_brightness,
    "contrast": F.adjust_contrast,
    "saturation": F.adjust_saturation,
    "hue": F.adjust_hue,
}
