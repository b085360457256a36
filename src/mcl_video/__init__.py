"""mcl-video: Motion-Focused Contrastive Learning (MCL) of video representations.

The package follows the data flow of the method; each stage imports only the ones before it:

    data -> motion -> sampling -> objective -> models -> training -> evaluation -> demo -> cli

Every stage is importable; ``demo`` is the application on top, the ``mcl`` command line a thin layer.
"""

__version__ = "0.1.0"


def load_encoder(path, **kwargs):
    """Return a frozen-ready backbone from one of our checkpoints or a torchvision state dict.

    See :func:`mcl_video.evaluation.encoder.load_encoder`.
    """
    from mcl_video.evaluation.encoder import load_encoder as _load

    return _load(path, **kwargs)


__all__ = ["__version__", "load_encoder"]
