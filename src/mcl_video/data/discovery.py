"""Finding videos and naming them: the video id every stage uses, and the search of a folder for video
files and frame folders."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from mcl_video.data import rawframes
from mcl_video.data.video import VIDEO_EXTENSIONS
from mcl_video.errors import DataError, MissingInputError


class VideoIdCollisionError(DataError):
    """Two videos of one folder with the same name and different extensions (one cache id)."""


def video_id(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """A video's id, the one name every stage uses for it (motion cache entries, datasets, collisions):
    its path relative to ``root`` (or ``path`` as given when ``root`` is None), POSIX separators, without
    a video file's extension (a frame folder keeps its whole name)."""
    rel = Path(path)
    if root is not None:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    if rel.suffix.lower() in VIDEO_EXTENSIONS:
        rel = rel.with_suffix("")
    return str(PurePosixPath(*rel.parts))


def find_videos(root: str | os.PathLike) -> list[Path]:
    """All files under ``root`` (recursive) whose extension is in VIDEO_EXTENSIONS, and all frame folders
    (folders holding ``img_<n>.jpg`` frames, see ``data.rawframes``), sorted.

    Raises :class:`VideoIdCollisionError` when two of them differ only by the extension (``clip.mp4`` and
    ``clip.avi``): a video is known by its path without the extension, so one would be lost.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"video folder {root} does not exist or is not a folder")
    videos = []
    for folder, _, names in os.walk(root, followlinks=True):
        base = Path(folder)
        if any(rawframes.FRAME_PATTERN.match(n) for n in names):
            videos.append(base)
        videos += [base / n for n in names
                   if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS and os.path.isfile(base / n)]
    videos.sort()
    by_id: dict[str, list[Path]] = {}
    for p in videos:
        by_id.setdefault(video_id(p), []).append(p)
    clashes = [paths for paths in by_id.values() if len(paths) > 1]
    if clashes:
        shown = "; ".join(" and ".join(str(p) for p in paths) for paths in clashes[:3])
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise VideoIdCollisionError(f"{len(clashes)} video name(s) under {root} differ only by extension: "
                                    f"{shown}{more}; a video is known by its path without the extension, "
                                    "so rename or remove one of each")
    return videos

