"""Dataset indexes: the official UCF101, HMDB51 and Kinetics-400 split files, and class folders.

``read_split`` returns one ``VideoRecord`` per video, with 0-based labels and the path relative to the
video root, in the order of the annotation files. Formats:

- ``ucf101``: ``classInd.txt`` (``<1-based id> <Class>``), ``trainlist0N.txt`` (``<Class>/<file>.avi
  <id>``), ``testlist0N.txt`` (``<Class>/<file>.avi``); CRLF line endings. Class names are matched
  case-insensitively, so the official ``HandstandPushups`` (classInd, folder) and ``HandStandPushups``
  (inside file names, and as folder name in some copies) are one class.
- ``hmdb51``: ``<class>_test_split{N}.txt`` with lines ``<video>.avi <id>``; id 1 = train, 2 = test,
  0 = unused. Labels follow the alphabetical order of the class names; path ``<class>/<video>``.
- ``kinetics400``: ``kinetics-400_{train,val,test}.csv`` (columns ``label, youtube_id, time_start,
  time_end, split``); path ``<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``. Label indices follow
  ``label_map.txt`` when the folder has one, else the sorted label names of the CSV. The test CSV has
  no labels: its records get label -1, class name ``""`` and the folder ``test/``. ``split`` is unused.
- ``folder``: ``annotation_dir`` holds one sub-folder per class (sorted names give the labels). Split
  into ``annotation_dir/train/<class>/`` and ``annotation_dir/test/<class>/``, subsets ``train`` and
  ``test`` are those folders (labels from the train classes; paths keep the ``train/`` or ``test/``
  part). Unsplit, subset ``train`` (or ``all``) is every video, with subset ``"all"`` (pretraining
  needs no split), and ``test`` is refused naming the fix: train and test would be the same videos.
  ``split`` is not used.
- ``mmaction2_rawframes`` / ``mmaction2_videos``: mmaction2's list files, lines ``<frame folder>
  <num_frames> <label>`` / ``<video> <label>``, 0-based labels, paths relative to the video root. The
  list of a subset is found in ``annotation_dir`` by name: ``*_<subset>_split_<N>_rawframes.txt`` (or
  ``_videos.txt``, as mmaction2's UCF101/HMDB51 tools write them), else ``*_<subset>_list_rawframes.txt``
  (Kinetics); subset ``test`` falls back to the ``val`` list. The class name is the path's first folder
  when it has one, else the label. ``num_frames`` is checked to be a number and otherwise unused: the
  reader counts the frames. Multi-label lines are refused. Labels must lie below the class count: the
  lines of ``classInd.txt`` or of a ``*label_map*.txt`` in the folder, else the train list's labels,
  which must then be ``0..K-1``.

Every listed path must be relative and stay inside the video root (no absolute paths, no ``../`` out
of it): such a line is an :class:`AnnotationError`.

A record's path may be a frame folder (``data.rawframes``). With ``video_root``, a listed ``x.avi`` that
is missing is also looked up as the frame folder ``x`` (official lists over extracted rawframes).

With ``video_root``, each file is looked up there (an exact match, else a match of every path part
ignoring case and ``" "``/``"_"``, which resolves the HandStandPushups folder and Kinetics folders with
underscores). Records keep only the files found, with the path as found on disk; the number missing is
logged as one warning with a few examples. Without ``video_root`` nothing is checked.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from mcl_video.data.discovery import find_videos
from mcl_video.data.rawframes import is_frame_folder
from mcl_video.errors import DataError, MissingInputError, UsageError

log = logging.getLogger(__name__)

DATASETS = ("ucf101", "hmdb51", "kinetics400", "folder", "mmaction2_rawframes", "mmaction2_videos")
_SUBSETS = {"ucf101": ("train", "test"), "hmdb51": ("train", "test"), "kinetics400": ("train", "val", "test"),
            "mmaction2_rawframes": ("train", "val", "test"), "mmaction2_videos": ("train", "val", "test")}
_HMDB_IDS = {"train": "1", "test": "2"}


class SplitChoiceError(UsageError, ValueError):
    """An unknown dataset name, subset or split number."""


class AnnotationError(DataError, ValueError):
    """An annotation file whose content is not the dataset's format; the message names file and line."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset split: ``path`` is relative to the video root, ``label`` is 0-based."""

    path: str
    label: int
    class_name: str
    split: int
    subset: str


def read_split(
    dataset: str,
    annotation_dir: str | os.PathLike,
    split: int = 1,
    subset: str = "train",
    video_root: str | os.PathLike | None = None,
) -> list[VideoRecord]:
    """Records of one split/subset of ``dataset`` (see the module docstring for the formats)."""
    dataset = dataset.lower()
    if dataset not in DATASETS:
        raise SplitChoiceError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise MissingInputError(
            f"annotation folder {annotation_dir} does not exist; for {dataset} it should hold "
            f"{_EXPECTED[dataset]}")
    if dataset != "folder":
        if subset not in _SUBSETS[dataset]:
            raise SplitChoiceError(f"{dataset}: subset must be one of {_SUBSETS[dataset]}, got {subset!r}")
        if dataset in ("ucf101", "hmdb51") and split not in (1, 2, 3):
            raise SplitChoiceError(f"{dataset}: split must be 1, 2 or 3, got {split!r}")
    readers = {"ucf101": _read_ucf101, "hmdb51": _read_hmdb51, "kinetics400": _read_kinetics,
               "folder": _read_folder, "mmaction2_rawframes": _read_mmaction_rawframes,
               "mmaction2_videos": _read_mmaction_videos}
    records = readers[dataset](annotation_dir, split, subset)
    _check_inside(records, annotation_dir, dataset)
    if video_root is not None:
        records = _keep_existing(records, Path(video_root), f"{dataset} split {split} {subset}")
    return records


def _check_inside(records: list[VideoRecord], annotation_dir: Path, dataset: str) -> None:
    """Every listed path is relative and stays inside the video root (no ``/abs`` and no ``../``)."""
    for r in records:
        parts = r.path.replace("\\", "/").split("/")
        depth = 0
        for part in parts:
            depth += -1 if part == ".." else 0 if part in ("", ".") else 1
            if depth < 0:
                break
        if r.path.startswith(("/", "\\")) or (len(r.path) > 1 and r.path[1] == ":") or depth < 0:
            raise AnnotationError(f"{annotation_dir}: {dataset} {r.subset} list names {r.path!r}, which "
                                  "leaves the video root; list paths relative to the video root, inside it")


_EXPECTED = {
    "ucf101": "classInd.txt, trainlist0{1,2,3}.txt and testlist0{1,2,3}.txt",
    "hmdb51": "the 153 files <class>_test_split{1,2,3}.txt",
    "kinetics400": "kinetics-400_{train,val,test}.csv (and optionally label_map.txt)",
    "folder": "one sub-folder of videos per class (split: train/<class>/ and test/<class>/)",
    "mmaction2_rawframes": "mmaction2 rawframe lists such as ucf101_train_split_1_rawframes.txt",
    "mmaction2_videos": "mmaction2 video lists such as ucf101_train_split_1_videos.txt",
}


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingInputError(f"{path} is missing; expected {what} in {path.parent}"
                                f"{_annotations_hint(path.parent)}")
    return path


def _annotations_hint(folder: Path) -> str:
    """For a dataset root given instead of its annotation folder: say that annotations/ is right there."""
    inner = folder / "annotations"
    return f" ({inner} is right there: pass that folder)" if inner.is_dir() else ""


def _lines(path: Path) -> list[str]:
    """Non-blank lines, stripped (handles CRLF and trailing spaces)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not a UTF-8 text file; is this the right file?") from None
    except OSError as err:
        raise AnnotationError(f"{path}: cannot read the annotation file ({err.strerror}); make it readable "
                              "(chmod a+r) or pass another folder") from None


def _bad_line(path: Path, number: int, line: str, expected: str) -> AnnotationError:
    return AnnotationError(f"{path}, line {number}: {line!r} is not {expected}; is this the right file?")


# ---- UCF101 -------------------------------------------------------------------------------------------


def _read_ucf101(root: Path, split: int, subset: str) -> list[VideoRecord]:
    class_file = _need(root / "classInd.txt", "the UCF101 class index (classInd.txt)")
    names: list[str] = []
    for n, line in enumerate(_lines(class_file), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(names) + 1:
            raise _bad_line(class_file, n, line, f"'{len(names) + 1} <ClassName>'")
        names.append(parts[1])
    by_key = {name.lower(): i for i, name in enumerate(names)}
    list_file = _need(root / f"{subset}list0{split}.txt", f"the UCF101 {subset} list of split {split}")
    records = []
    for n, line in enumerate(_lines(list_file), 1):
        parts = line.split()
        folder = parts[0].replace("\\", "/").split("/")[0] if parts else ""
        label = by_key.get(folder.lower())
        if len(parts) not in (1, 2) or "/" not in parts[0] or label is None:
            raise _bad_line(list_file, n, line, "'<ClassName>/<video>.avi [id]' with a class of classInd.txt")
        if len(parts) == 2 and (not parts[1].isdigit() or int(parts[1]) != label + 1):
            raise _bad_line(list_file, n, line, f"labelled {label + 1} ({names[label]}) as classInd.txt says")
        records.append(VideoRecord(parts[0], label, names[label], split, subset))
    return records


# ---- HMDB51 -------------------------------------------------------------------------------------------


def _read_hmdb51(root: Path, split: int, subset: str) -> list[VideoRecord]:
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in root.iterdir() if p.name.endswith(suffix))
    if not files:
        raise MissingInputError(f"no HMDB51 split files <class>{suffix} in {root}; expected "
                                f"{_EXPECTED['hmdb51']}{_annotations_hint(root)}")
    classes = sorted(p.name[: -len(suffix)] for p in files)
    records = []
    for label, name in enumerate(classes):
        path = root / f"{name}{suffix}"
        for n, line in enumerate(_lines(path), 1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise _bad_line(path, n, line, "'<video>.avi <0|1|2>'")
            if parts[1] == _HMDB_IDS[subset]:
                records.append(VideoRecord(f"{name}/{parts[0]}", label, name, split, subset))
    return records


# ---- Kinetics-400 -------------------------------------------------------------------------------------


def _kinetics_csv(root: Path, subset: str) -> Path:
    aliases = {"val": ("val", "validate"), "train": ("train",), "test": ("test",)}[subset]
    for alias in aliases:
        for pattern in ("kinetics-400_{}.csv", "kinetics400_{}.csv", "kinetics_400_{}.csv", "{}.csv"):
            if (root / pattern.format(alias)).is_file():
                return root / pattern.format(alias)
    raise MissingInputError(f"no Kinetics-400 {subset} CSV in {root}; expected kinetics-400_{subset}.csv "
                            "with columns label,youtube_id,time_start,time_end,split"
                            f"{_annotations_hint(root)}")


def _read_kinetics(root: Path, split: int, subset: str) -> list[VideoRecord]:
    path = _kinetics_csv(root, subset)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not a UTF-8 text file; is this the right file?") from None
    except OSError as err:
        raise AnnotationError(f"{path}: cannot read the annotation file ({err.strerror}); make it readable "
                              "(chmod a+r) or pass another folder") from None
    needed = {"youtube_id", "time_start", "time_end"}
    if not rows or not needed <= set(rows[0]):
        raise AnnotationError(f"{path}: expected a header with columns {sorted(needed)} (and label), "
                         f"got {list(rows[0]) if rows else 'an empty file'}")
    labelled = "label" in rows[0]
    names = _kinetics_names(root, rows) if labelled else []
    label_of = {name: i for i, name in enumerate(names)}
    records = []
    for n, row in enumerate(rows, 2):
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (TypeError, ValueError):
            raise AnnotationError(f"{path}, line {n}: time_start/time_end {row['time_start']!r}, "
                                  f"{row['time_end']!r} are not numbers; is this the right file?") from None
        stem = f"{row['youtube_id']}_{start:06d}_{end:06d}.mp4"
        if not labelled:
            records.append(VideoRecord(f"test/{stem}", -1, "", split, subset))
            continue
        name = row["label"]
        if name not in label_of:
            raise AnnotationError(f"{path}, line {n}: label {name!r} is not in {root / 'label_map.txt'}")
        records.append(VideoRecord(f"{name}/{stem}", label_of[name], name, split, subset))
    return records


def _kinetics_names(root: Path, rows: list[dict]) -> list[str]:
    label_map = root / "label_map.txt"
    if label_map.is_file():
        return _lines(label_map)
    return sorted({row["label"] for row in rows})


# ---- class folders ------------------------------------------------------------------------------------


def _class_folders(root: Path) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        raise DataError(f"{root}: cannot list the class folders ({err.strerror}); make it readable") from None


def folder_has_split(root: str | os.PathLike) -> bool:
    """Whether a class-folder dataset is split: ``root/train/<class>/`` and ``root/test/<class>/``."""
    root = Path(root)
    return all((root / s).is_dir() and _class_folders(root / s) for s in FOLDER_SUBSETS)


FOLDER_SUBSETS = ("train", "test")


def _read_folder(root: Path, split: int, subset: str) -> list[VideoRecord]:
    """Class folders. Split: ``root/train/<class>/`` and ``root/test/<class>/`` (labels from the train
    classes). Unsplit: subset ``train`` or ``all`` is every video (for pretraining); ``test`` is
    refused, as train and test would be the same videos."""
    if folder_has_split(root):
        if subset not in (*FOLDER_SUBSETS, "all"):
            raise SplitChoiceError(f"folder: subset must be train, test or all, got {subset!r}")
        classes = _class_folders(root / "train")
        if subset == "all":
            return _read_folder(root, split, "train") + _read_folder(root, split, "test")
        unknown = sorted(set(_class_folders(root / subset)) - set(classes))
        if unknown:
            raise DataError(f"{root / subset}: class folder(s) {', '.join(unknown[:3])} have no counterpart "
                            f"in {root / 'train'}; every test class needs training videos")
        base = root / subset
    else:
        if subset not in ("train", "all"):
            raise SplitChoiceError(
                f"folder dataset {root} has no train/test split, so its {subset} videos would be its "
                f"training videos (every score 100%): put the videos in {root / 'train'}/<class>/ and "
                f"{root / 'test'}/<class>/, or write UCF101-style lists and use the ucf101 dataset kind")
        classes = _class_folders(root)
        base = root
    if not classes:
        raise MissingInputError(f"{base} has no class sub-folders; expected {_EXPECTED['folder']}")
    records = []
    for label, name in enumerate(classes):
        if not (base / name).is_dir():
            continue
        for video in find_videos(base / name):
            records.append(VideoRecord(video.relative_to(root).as_posix(), label, name, split,
                                       subset if base != root else "all"))
    return records


# ---- mmaction2 list files ----------------------------------------------------------------------------


def _mmaction_list(root: Path, split: int, subset: str, kind: str) -> Path:
    """The list file of ``subset`` (and ``split``) in ``root``; ``test`` falls back to ``val``."""
    tried = []
    for name in (subset, "val") if subset == "test" else (subset,):
        for pattern in (f"*_{name}_split_{split}_{kind}.txt", f"*_{name}_list_{kind}.txt"):
            found = sorted(root.glob(pattern))
            tried.append(pattern)
            if len(found) > 1:
                raise AnnotationError(f"{root}: {len(found)} files match {pattern} "
                                      f"({', '.join(p.name for p in found[:3])}); keep one per folder")
            if found:
                return found[0]
    raise MissingInputError(f"no mmaction2 {subset} list in {root}: none of {', '.join(tried)}"
                            f"{_annotations_hint(root)}")


_MMACTION_LINES = {"rawframes": (3, "'<frame folder> <num_frames> <label>'"),
                   "videos": (2, "'<video> <label>'")}


def _mmaction_class_count(root: Path, split: int, kind: str) -> tuple[int, str] | None:
    """Number of classes of an mmaction2 list folder and where it comes from: ``classInd.txt`` or one
    ``*label_map*.txt`` (a name per line) when present, else the train list, whose labels must then be
    exactly ``0..K-1`` (every class has training videos); None without any of them."""
    maps = sorted(root.glob("*label_map*.txt"))
    for found in ([root / "classInd.txt"] if (root / "classInd.txt").is_file() else []) + maps[:1]:
        return len(_lines(found)), str(found)
    try:
        train = _mmaction_list(root, split, "train", kind)
    except MissingInputError:
        return None
    labels = sorted({int(line.split()[-1]) for line in _lines(train) if line.split()[-1].isdigit()})
    if labels and labels != list(range(len(labels))):
        gap = next(i for i, v in enumerate(labels) if v != i)
        raise AnnotationError(
            f"{train}: labels are not 0..K-1 ({len(labels)} distinct labels, but label {labels[gap]} where "
            f"{gap} is missing), so the class count is unclear; number the classes from 0 without gaps, or "
            f"put a label map (one class name per line, e.g. label_map.txt) in {root}")
    return len(labels), f"the {len(labels)} labels of {train.name}"


def _read_mmaction(root: Path, split: int, subset: str, kind: str) -> list[VideoRecord]:
    path = _mmaction_list(root, split, subset, kind)
    fields, expected = _MMACTION_LINES[kind]
    records = []
    for n, line in enumerate(_lines(path), 1):
        parts = line.split()
        numbers = parts[1:]
        if len(parts) != fields or not all(x.isdigit() for x in numbers):
            raise _bad_line(path, n, line, expected + " (one label per line)")
        rel = parts[0].replace("\\", "/")
        label = int(numbers[-1])
        name = rel.split("/")[0] if "/" in rel else str(label)
        records.append(VideoRecord(rel, label, name, split, subset))
    classes = _mmaction_class_count(root, split, kind)
    if classes is not None:
        count, source = classes
        for n, record in enumerate(records, 1):
            if record.label >= count:
                raise AnnotationError(f"{path}, line {n}: label {record.label} is outside the {count} "
                                      f"classes (0..{count - 1}) of {source}; fix the label or the class "
                                      "list")
    return records


def _read_mmaction_rawframes(root: Path, split: int, subset: str) -> list[VideoRecord]:
    return _read_mmaction(root, split, subset, "rawframes")


def _read_mmaction_videos(root: Path, split: int, subset: str) -> list[VideoRecord]:
    return _read_mmaction(root, split, subset, "videos")


# ---- existence check ----------------------------------------------------------------------------------


def _norm(part: str) -> str:
    return part.lower().replace(" ", "_")


def _keep_existing(records: list[VideoRecord], video_root: Path, what: str) -> list[VideoRecord]:
    """Records whose file exists under ``video_root`` (path as found); logs one line for the rest."""
    if not video_root.is_dir():
        raise MissingInputError(f"video root {video_root} does not exist; pass the folder holding the videos")
    listings: dict[Path, dict[str, str]] = {}

    def resolve(rel: str) -> str | None:
        found = match(rel)
        stem = os.path.splitext(rel)[0]
        if found is None and stem != rel:  # x.avi listed, frame folder x extracted
            found = match(stem)
        return found

    def match(rel: str) -> str | None:
        if (video_root / rel).is_file() or is_frame_folder(video_root / rel):
            return rel
        folder, found = video_root, []
        for part in rel.split("/"):
            if folder not in listings:
                entries = folder.iterdir() if folder.is_dir() else ()
                listings[folder] = {_norm(p.name): p.name for p in entries}
            name = listings[folder].get(_norm(part))
            if name is None:
                return None
            found.append(name)
            folder = folder / name
        return "/".join(found) if folder.is_file() or is_frame_folder(folder) else None

    kept, missing = [], []
    for record in records:
        rel = resolve(record.path)
        if rel is None:
            missing.append(record.path)
        else:
            kept.append(record if rel == record.path else replace(record, path=rel))
    if missing:
        log.warning("%s: %d of %d videos missing under %s (e.g. %s); left out of the records",
                    what, len(missing), len(records), video_root, ", ".join(missing[:3]))
    return kept
