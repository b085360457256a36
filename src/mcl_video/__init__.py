"""mcl-video: Motion-Focused Contrastive Learning (MCL) of video representations.

The package follows the data flow of the method:

    data -> motion -> sampling -> models -> objective -> training -> evaluation

Every stage is importable; the ``mcl`` command line is a thin layer over it.
"""

__version__ = "0.1.0"


def load_encoder(path, **kwargs):
    """Return a frozen-ready backbone from one of our checkpoints or a torchvision state dict.

    See :func:`mcl_video.evaluation.encoder.load_encoder`.
    """
    from mcl_video.evaluation.encoder import load_encoder as _load

    return _load(path, **kwargs)


__all__ = ["__version__", "load_encoder"]
