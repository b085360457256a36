"""Finding videos and naming them: the video id every stage uses, and the search of a folder for video
files and frame folders."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path, PurePosixPath

from mcl_video.data import rawframes
from mcl_video.data.video import VIDEO_EXTENSIONS
from mcl_video.errors import DataError, MissingInputError

log = logging.getLogger(__name__)


class VideoIdCollisionError(DataError):
    """Two videos of one folder with the same name and different extensions (one cache id)."""


class SymlinkLoopError(DataError):
    """A folder under the video root links back to one of its ancestors."""


class UnreadableFolderError(DataError):
    """A folder under the video root that cannot be listed (its videos would be left out)."""


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
    ``clip.avi``): a video is known by its path without the extension, so one would be lost;
    :class:`SymlinkLoopError` for a link back to an ancestor folder; :class:`UnreadableFolderError` for
    folders that cannot be listed. Links are followed; a second link to a folder already searched is
    searched once (with a warning).
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"video folder {root} does not exist or is not a folder")
    videos = []
    unreadable: list[str] = []
    seen: dict[str, Path] = {}  # real path of each folder walked -> the path it was reached by

    def failed(err: OSError) -> None:
        unreadable.append(f"{err.filename} ({err.strerror})")

    for folder, dirs, names in os.walk(root, followlinks=True, onerror=failed):
        base = Path(folder)
        seen.setdefault(os.path.realpath(base), base)
        keep = []
        for d in sorted(dirs):
            real = os.path.realpath(base / d)
            if real in seen or real == os.path.realpath(root):
                target = seen.get(real, root)
                if os.path.commonpath([real, os.path.realpath(base)]) == real:  # an ancestor: a loop
                    raise SymlinkLoopError(f"{base / d} links back to {target} (a symlink loop under "
                                           f"{root}); remove or replace the link")
                log.warning("%s is a link to %s, already searched: its videos are counted once", base / d,
                            target)
                continue
            seen[real] = base / d
            keep.append(d)
        dirs[:] = keep
        if any(rawframes.FRAME_PATTERN.match(n) for n in names):
            videos.append(base)
        videos += [base / n for n in names
                   if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS and os.path.isfile(base / n)]
    if unreadable:
        more = f" (and {len(unreadable) - 3} more)" if len(unreadable) > 3 else ""
        raise UnreadableFolderError(f"cannot read {len(unreadable)} folder(s) under {root}: "
                                    f"{'; '.join(unreadable[:3])}{more}; their videos would be left out: "
                                    "make them readable (chmod a+rx) or move them out of the folder")
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



FINGERPRINT_BYTES = 1 << 20  # the content hash reads this much from the start and from the end


def _hash_ends(h, path: Path, size: int) -> None:
    with open(path, "rb") as fh:
        h.update(fh.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            h.update(fh.read(FINGERPRINT_BYTES))


def source_fingerprint(path: str | os.PathLike, content: bool = True) -> dict:
    """``{"size", "mtime_ns", "hash"}`` of a video file or frame folder: the fast identity a motion-cache
    entry records of its source, so that a replaced video is prepared again.

    ``hash``: sha256 of the size and the first and last MiB (of a frame folder: of its file names and
    sizes and the ends of its first and last frame), so a video is never read whole; ``content=False``
    leaves it out (size and mtime only, for the quick comparison first).
    """
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        stats = [p.stat() for p in files]
        size = sum(s.st_size for s in stats)
        mtime = max([s.st_mtime_ns for s in stats] + [path.stat().st_mtime_ns])
        if content:
            h.update("\n".join(f"{p.name} {s.st_size}" for p, s in zip(files, stats)).encode())
            for p, s in {files[0]: stats[0], files[-1]: stats[-1]}.items() if files else ():
                _hash_ends(h, p, s.st_size)
    else:
        st = path.stat()
        size, mtime = st.st_size, st.st_mtime_ns
        if content:
            h.update(str(size).encode())
            _hash_ends(h, path, size)
    out = {"size": int(size), "mtime_ns": int(mtime)}
    if content:
        out["hash"] = h.hexdigest()[:32]
    return out


def source_changed(recorded: dict | None, path: str | os.PathLike) -> str | None:
    """Why the file at ``path`` is not the source ``recorded`` by :func:`source_fingerprint` (None: the
    same). Size and mtime equal: the same; otherwise the content hash decides (a copy that only got a new
    mtime is the same video)."""
    if not recorded:
        return "the entry does not record its source"
    try:
        now = source_fingerprint(path, content=False)
    except OSError as err:
        return f"its source cannot be read ({err.strerror})"
    if now["size"] == recorded.get("size") and now["mtime_ns"] == recorded.get("mtime_ns"):
        return None
    if now["size"] != recorded.get("size"):
        return f"the source's size changed ({recorded.get('size')} -> {now['size']} bytes)"
    try:
        digest = source_fingerprint(path)["hash"]
    except OSError as err:
        return f"its source cannot be read ({err.strerror})"
    return None if digest == recorded.get("hash") else "the source's content changed (same size, new hash)"
