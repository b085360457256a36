"""``RunSummary``: the counts of a run over a folder of videos (``prepare``, ``transcode``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunSummary:
    """Counts every such run reports; ``failed`` maps video path -> reason. Subclasses add the count of
    videos the run itself did and print themselves with :meth:`describe`."""

    total: int = 0
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self, done: int, verb: str, rates: str = "") -> str:
        """One line: ``{total} videos: {done} {verb}, ...; ... ({rates}{frames/s} frames/s)``."""
        return (f"{self.total} videos: {done} {verb}, {self.skipped} already done, "
                f"{len(self.failed)} failed; {self.frames} frames in {self.seconds:.1f} s "
                f"({rates}{self.frames / max(self.seconds, 1e-9):.1f} frames/s)")
