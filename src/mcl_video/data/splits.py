"""Dataset indexes: the official UCF101, HMDB51, Kinetics-400/600/700 and Something-Something v2 split
files, and class folders.

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
- ``kinetics600`` / ``kinetics700``: the same CSV layout, named ``kinetics-600_{train,val,test}.csv`` /
  ``kinetics-700_{...}.csv`` (also ``kinetics600_``, ``kinetics_600_`` and plain ``train.csv``, ...).
- ``ssv2`` (Something-Something v2): ``labels.json`` (``{"<class text>": "<0-based id>"}``) and
  ``train.json`` / ``validation.json`` (lists of ``{"id", "label", "template", "placeholders"}``);
  the class is the ``template`` with its brackets removed (``"Putting [something] on [something]"`` ->
  ``"Putting something on something"``), looked up in ``labels.json``; the path is ``<id>.webm``.
  Subsets ``train`` and ``val``; ``test`` also reads ``validation.json`` (the official test set has no
  labels), so the usual evaluation on the validation set is ``subset="test"`` like the other datasets.
  ``split`` is unused.
- ``folder``: ``annotation_dir`` holds one sub-folder per class (sorted names give the labels); every
  video under it is one record with subset ``"all"``; ``split`` and ``subset`` are not used.
- ``mmaction2_rawframes`` / ``mmaction2_videos``: mmaction2's list files, lines ``<frame folder>
  <num_frames> <label>`` / ``<video> <label>``, 0-based labels, paths relative to the video root. The
  list of a subset is found in ``annotation_dir`` by name: ``*_<subset>_split_<N>_rawframes.txt`` (or
  ``_videos.txt``, as mmaction2's UCF101/HMDB51 tools write them), else ``*_<subset>_list_rawframes.txt``
  (Kinetics); subset ``test`` falls back to the ``val`` list. The class name is the path's first folder
  when it has one, else the label. ``num_frames`` is checked to be a number and otherwise unused: the
  reader counts the frames. Multi-label lines are refused.

A record's path may be a frame folder (``data.rawframes``). With ``video_root``, a listed ``x.avi`` that
is missing is also looked up as the frame folder ``x`` (official lists over extracted rawframes).

With ``video_root``, each file is looked up there (an exact match, else a match of every path part
ignoring case and ``" "``/``"_"``, which resolves the HandStandPushups folder and Kinetics folders with
underscores). Records keep only the files found, with the path as found on disk; the number missing is
logged as one warning with a few examples. Without ``video_root`` nothing is checked.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from mcl_video.data.discovery import find_videos
from mcl_video.data.rawframes import is_frame_folder
from mcl_video.errors import DataError, MissingInputError, UsageError

log = logging.getLogger(__name__)

DATASETS = ("ucf101", "hmdb51", "kinetics400", "kinetics600", "kinetics700", "ssv2", "folder",
            "mmaction2_rawframes", "mmaction2_videos")
KINETICS = {"kinetics400": 400, "kinetics600": 600, "kinetics700": 700}  # dataset name -> classes
_SUBSETS = {"ucf101": ("train", "test"), "hmdb51": ("train", "test"), "kinetics400": ("train", "val", "test"),
            "kinetics600": ("train", "val", "test"), "kinetics700": ("train", "val", "test"),
            "ssv2": ("train", "val", "test"),
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
               "kinetics600": _read_kinetics600, "kinetics700": _read_kinetics700, "ssv2": _read_ssv2,
               "folder": _read_folder, "mmaction2_rawframes": _read_mmaction_rawframes,
               "mmaction2_videos": _read_mmaction_videos}
    records = readers[dataset](annotation_dir, split, subset)
    if video_root is not None:
        records = _keep_existing(records, Path(video_root), f"{dataset} split {split} {subset}")
    return records


_EXPECTED = {
    "ucf101": "classInd.txt, trainlist0{1,2,3}.txt and testlist0{1,2,3}.txt",
    "hmdb51": "the 153 files <class>_test_split{1,2,3}.txt",
    "kinetics400": "kinetics-400_{train,val,test}.csv (and optionally label_map.txt)",
    "kinetics600": "kinetics-600_{train,val,test}.csv (and optionally label_map.txt)",
    "kinetics700": "kinetics-700_{train,val,test}.csv (and optionally label_map.txt)",
    "ssv2": "labels.json, train.json and validation.json",
    "folder": "one sub-folder of videos per class",
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


# ---- Kinetics-400/600/700 -----------------------------------------------------------------------------


def _kinetics_csv(root: Path, subset: str, classes: int = 400) -> Path:
    aliases = {"val": ("val", "validate"), "train": ("train",), "test": ("test",)}[subset]
    for alias in aliases:
        for pattern in (f"kinetics-{classes}_{{}}.csv", f"kinetics{classes}_{{}}.csv",
                        f"kinetics_{classes}_{{}}.csv", "{}.csv"):
            if (root / pattern.format(alias)).is_file():
                return root / pattern.format(alias)
    raise MissingInputError(f"no Kinetics-{classes} {subset} CSV in {root}; expected "
                            f"kinetics-{classes}_{subset}.csv with columns label,youtube_id,time_start,"
                            f"time_end,split{_annotations_hint(root)}")


def _read_kinetics600(root: Path, split: int, subset: str) -> list[VideoRecord]:
    return _read_kinetics(root, split, subset, classes=600)


def _read_kinetics700(root: Path, split: int, subset: str) -> list[VideoRecord]:
    return _read_kinetics(root, split, subset, classes=700)


def _read_kinetics(root: Path, split: int, subset: str, classes: int = 400) -> list[VideoRecord]:
    path = _kinetics_csv(root, subset, classes)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
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


# ---- Something-Something v2 ---------------------------------------------------------------------------


def _json(path: Path, what: str):
    _need(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AnnotationError(f"{path}: not valid JSON ({err}); is this the right file?") from None


def ssv2_class(template: str) -> str:
    """An SSv2 ``template`` as its class text: ``"Putting [something] on [something]"`` ->
    ``"Putting something on something"``."""
    return " ".join(template.replace("[", "").replace("]", "").split())


def _read_ssv2(root: Path, split: int, subset: str) -> list[VideoRecord]:
    labels = _json(root / "labels.json", _EXPECTED["ssv2"])
    if not isinstance(labels, dict):
        raise AnnotationError(f"{root / 'labels.json'}: expected a mapping of class text to id")
    try:
        label_of = {ssv2_class(name): int(i) for name, i in labels.items()}
    except (TypeError, ValueError):
        raise AnnotationError(f"{root / 'labels.json'}: class ids must be whole numbers") from None
    path = root / ("train.json" if subset == "train" else "validation.json")
    entries = _json(path, _EXPECTED["ssv2"])
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a list of videos ({{'id', 'template', ...}})")
    records = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise AnnotationError(f"{path}, entry {n}: expected keys 'id' and 'template', got "
                                  f"{sorted(entry) if isinstance(entry, dict) else type(entry).__name__}")
        name = ssv2_class(str(entry["template"]))
        if name not in label_of:
            raise AnnotationError(f"{path}, entry {n} (id {entry['id']}): class {name!r} is not in "
                                  f"{root / 'labels.json'}")
        records.append(VideoRecord(f"{entry['id']}.webm", label_of[name], name, split, subset))
    return records


# ---- class folders ------------------------------------------------------------------------------------


def _read_folder(root: Path, split: int, subset: str) -> list[VideoRecord]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise MissingInputError(f"{root} has no class sub-folders; expected {_EXPECTED['folder']}")
    records = []
    for label, name in enumerate(classes):
        for video in find_videos(root / name):
            records.append(VideoRecord(video.relative_to(root).as_posix(), label, name, split, "all"))
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
