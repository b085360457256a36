"""Headless figures: every picture the package writes (confusion matrices, tubelet sheets, the demo
report) gets pyplot from :func:`pyplot`, which selects the non-interactive Agg backend first, so no
display is ever needed."""

from __future__ import annotations

import matplotlib


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (PNG files)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # imported after the backend is chosen (pyplot binds it on import)

    return plt
