"""Flow JPEGs (denseflow / mmaction2 ``flow_x_%05d.jpg``): quantisation, reading, ``prepare --flow-from``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mcl_video.cli import main
from mcl_video.data.rawframes import dequantise_flow, quantise_flow
from mcl_video.motion.cache import CacheSettings, MotionCache
from mcl_video.motion.flow import compute_flow, read_flow_folder
from mcl_video.motion.prepare import FLOW_JPEG, _MotionAccumulator, prepare

BOUND = 20.0
STEP = 2 * BOUND / 255  # one quantisation step, pixels
BASE = dict(clip_len=4, stride=1, border=1, field_short=12, resize_short=None, frame_window=4)


def test_quantisation_is_denseflows_formula():
    # q = round(255 * (v + b) / 2b), clipped to 0..255 (denseflow's convertFlowToImage with b = 20);
    # 0 px -> 127.5 -> 128 (rounding half to even, as cvRound does)
    v = np.array([-25.0, -20.0, -10.0, 0.0, 0.05, 10.0, 19.8, 20.0, 30.0])
    assert quantise_flow(v, BOUND).tolist() == [0, 0, 64, 128, 128, 191, 254, 255, 255]
    back = dequantise_flow(np.array([0, 128, 255]), BOUND).tolist()
    assert back == pytest.approx([-20.0, BOUND / 255, 20.0], abs=1e-5)  # float32
    flow = np.random.default_rng(0).uniform(-BOUND, BOUND, (50, 60)).astype(np.float32)
    err = np.abs(dequantise_flow(quantise_flow(flow, BOUND), BOUND) - flow)
    assert err.max() <= STEP / 2 + 1e-5  # round-to-nearest: at most half a step
    # mmaction2's Python extractor truncates: decoded the same way, low by [0, 1) step
    truncated = ((flow + BOUND) * (255 / (2 * BOUND))).astype(np.uint8)
    low = flow - dequantise_flow(truncated, BOUND)
    assert low.min() >= -1e-5 and low.max() < STEP + 1e-5 and abs(low.mean() - STEP / 2) < 0.05 * STEP


def smooth_flow(t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth rotating-and-translating flow field (pixels), different per flow frame ``t``."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2, w / 2
    blob = np.exp(-(((y - cy - t) / (h / 4)) ** 2 + ((x - cx) / (w / 4)) ** 2))
    u = 6.0 * blob * (y - cy) / h + 1.5
    v = -6.0 * blob * (x - cx) / w + 0.5 * np.sin(t)
    return u.astype(np.float32), v.astype(np.float32)


def write_flow_jpegs(folder: Path, flows, prefix: str = "flow_") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (u, v) in enumerate(flows, 1):
        for axis, comp in (("x", u), ("y", v)):
            cv2.imwrite(str(folder / f"{prefix}{axis}_{i:05d}.jpg"), quantise_flow(comp, BOUND),
                        [cv2.IMWRITE_JPEG_QUALITY, 100])


@pytest.mark.parametrize("prefix", ["flow_", ""])
def test_flow_jpegs_round_trip_within_jpeg_loss(tmp_path, prefix):
    flows = [smooth_flow(t, 30, 40) for t in range(3)]
    write_flow_jpegs(tmp_path / "v", flows, prefix)
    read = list(read_flow_folder(tmp_path / "v", BOUND))
    assert len(read) == 3
    for i, ((u, v), (ru, rv)) in enumerate(zip(flows, read), 1):
        assert ru.dtype == np.float32 and ru.shape == (30, 40)
        # the reader: exactly the inverse mapping of the decoded pixel values
        for axis, got in (("x", ru), ("y", rv)):
            pixels = cv2.imread(str(tmp_path / "v" / f"{prefix}{axis}_{i:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
            np.testing.assert_array_equal(got, dequantise_flow(pixels, BOUND))
        # against the float flow: half a step of quantisation plus JPEG's own loss (quality 100: a few
        # pixels off by 1-3 levels), so within one step on average and two steps everywhere
        for got, want in ((ru, u), (rv, v)):
            err = np.abs(got - want)
            assert err.mean() <= 0.5 * STEP and err.max() <= 2 * STEP


def test_flow_jpegs_downscaled_like_computed_flow(tmp_path):
    u, v = np.full((40, 60), 4.0, np.float32), np.full((40, 60), -2.0, np.float32)
    write_flow_jpegs(tmp_path / "v", [(u, v)])
    (ru, rv), = read_flow_folder(tmp_path / "v", BOUND, resize_short=20)
    assert ru.shape == (20, 30)  # short side 20, aspect kept; vectors halved with the image
    assert np.abs(ru - 2.0).max() <= STEP and np.abs(rv + 1.0).max() <= STEP


def test_flow_folder_errors_name_the_folder(tmp_path):
    write_flow_jpegs(tmp_path / "v", [smooth_flow(t, 8, 8) for t in range(3)])
    (tmp_path / "v" / "flow_y_00002.jpg").unlink()
    with pytest.raises(Exception, match=r"v: flow_y_<n>.jpg flow image number 2 is missing"):
        list(read_flow_folder(tmp_path / "v", BOUND))
    with pytest.raises(Exception, match=r"nothing: no flow folder for this video"):
        list(read_flow_folder(tmp_path / "nothing", BOUND))


def _reference(flows, settings: CacheSettings) -> dict[str, np.ndarray]:
    """The cache arrays of a video whose flow is given directly (floats, no JPEGs)."""
    acc = _MotionAccumulator(settings, flows[0][0].shape)
    for u, v in flows:
        acc.push(u, v)
    arrays = acc.finish()[0]
    # the cache stores frame maps as float16 (format v3) and reads them back as float32
    return dict(arrays, frame_maps=arrays["frame_maps"].astype(np.float16).astype(np.float32))


def _entry(cache_dir: Path, vid: str):
    m = MotionCache(cache_dir).get(vid)
    return {"frame_maps": m.frame_maps, "clip_scores": m.clip_scores,
            "fields": m.fields.astype(np.float32) * m.scales[:, :, None, None]}


@pytest.fixture
def dataset(tmp_path, make_frames, write_rawframes):
    """Rawframes ``Run/v1`` (9 frames) and ``Run/v2`` (7), with flow JPEGs in the same folders."""
    root = tmp_path / "rawframes"
    flows = {}
    for vid, n in (("Run/v1", 9), ("Run/v2", 7)):
        write_rawframes(root / vid, make_frames(n, h=30, w=40, seed=n))
        flows[vid] = [smooth_flow(t, 30, 40) for t in range(n - 1)]
        write_flow_jpegs(root / vid, flows[vid])
    return root, flows


def test_prepare_from_flow_jpegs_matches_the_flow_given_directly(dataset, tmp_path):
    root, flows = dataset
    settings = CacheSettings(flow_backend=FLOW_JPEG, flow_options={"bound": BOUND}, **BASE)
    summary = prepare(root, tmp_path / "cache", settings, flow_from=root, progress=False)
    assert summary.ok and (summary.prepared, summary.frames) == (2, 16)
    cache = MotionCache(tmp_path / "cache")
    assert cache.video_ids() == ["Run/v1", "Run/v2"] and cache.bad_entries() == {}
    assert cache.meta["settings"]["flow_backend"] == "jpeg"
    assert cache.meta["settings"]["flow_options"] == {"bound": BOUND}
    for vid, vid_flows in flows.items():
        got = _entry(tmp_path / "cache", vid)
        assert cache.get(vid).num_frames == len(vid_flows) + 1
        # the same flow given directly (the decoded JPEGs as floats): the same cache content
        decoded = list(read_flow_folder(root / vid, BOUND))
        same = _reference(decoded, settings)
        np.testing.assert_array_equal(got["frame_maps"], same["frame_maps"])
        np.testing.assert_array_equal(got["clip_scores"], same["clip_scores"])
        np.testing.assert_array_equal(got["fields"], same["fields"] * same["scales"][:, :, None, None])
        # the float flow before quantisation: maps are Prewitt magnitudes, which turn the quantisation
        # and JPEG noise of the flow into a few per cent of their peak
        want = _reference(vid_flows, settings)
        for k in ("frame_maps", "clip_scores"):
            assert np.abs(got[k] - want[k]).max() <= 0.1 * want[k].max(), k
    with np.load(tmp_path / "cache" / "videos" / "Run" / "v1.npz") as z:
        assert '"flow_from": "' + str(root / "Run" / "v1") in str(z["info"])


def test_prepare_from_rawframes_computes_flow_on_the_frames(dataset, tmp_path):
    root, _ = dataset
    settings = CacheSettings(**BASE)
    assert prepare(root, tmp_path / "cache", settings, progress=False).ok
    frames = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                       for p in sorted((root / "Run" / "v2").glob("img_*.jpg"))])
    u, v = compute_flow(frames, "dis")
    want = _reference(list(zip(u, v)), settings)
    got = _entry(tmp_path / "cache", "Run/v2")
    np.testing.assert_array_equal(got["frame_maps"], want["frame_maps"])
    np.testing.assert_array_equal(got["clip_scores"], want["clip_scores"])


def test_cli_flow_from_and_its_usage_errors(dataset, tmp_path, capsys, make_frames, write_rawframes):
    root, _ = dataset
    (root / "Run" / "v3").mkdir()
    write_rawframes(root / "Run" / "v3", make_frames(4, h=30, w=40))  # frames, but no flow
    args = ["--clip-len", "4", "--stride", "1", "--border", "1", "--field-short", "12",
            "--resize-short", "none", "--frame-window", "4", "--no-progress"]
    out = tmp_path / "cache"
    assert main(["prepare", str(root), "--out", str(out), "--flow-from", str(root), "--flow-bound", "20",
                 *args]) == 1  # v3 fails (no flow images), the others are prepared
    text = capsys.readouterr().out
    assert "3 videos: 2 prepared" in text and "v3: no flow images" in text
    assert MotionCache(out).video_ids() == ["Run/v1", "Run/v2"]
    assert main(["prepare", str(root), "--out", str(tmp_path / "x"), "--flow-from", str(root),
                 "--flow", "tvl1", *args]) == 2
    assert "leave out --flow" in capsys.readouterr().err
    assert main(["prepare", str(root), "--out", str(tmp_path / "x"), "--flow-from", str(tmp_path / "none"),
                 *args]) == 2
    assert "--flow-from" in capsys.readouterr().err
    # the same cache folder with another bound is refused (the bound is part of its settings)
    assert main(["prepare", str(root), "--out", str(out), "--flow-from", str(root), "--flow-bound", "15",
                 *args]) == 2


def test_mmaction2_rawframes_dataset_prepares_pretrains_and_evaluates(tmp_path, capsys, make_frames,
                                                                      write_rawframes):
    """An mmaction2-style dataset end to end: list files, rawframes with flow JPEGs, `mcl prepare
    --dataset mmaction2_rawframes --flow-from`, a pretraining item, `mcl evaluate`."""
    import json

    import torch

    from mcl_video.data import read_split
    from mcl_video.sampling import MCLPretrainDataset

    root, ann = tmp_path / "rawframes", tmp_path / "annotations"
    ann.mkdir()
    lines = {"train": [], "val": []}
    for label, cls in enumerate(("Jump", "Wave")):
        for g in range(3):
            rel = f"{cls}/v_{cls}_g{g:02d}_c01"
            write_rawframes(root / rel, make_frames(20, h=24, w=32, seed=10 * label + g))
            write_flow_jpegs(root / rel, [smooth_flow(t + g, 24, 32) for t in range(19)])
            lines["train" if g < 2 else "val"].append(f"{rel} 20 {label}")
    for subset, rows in lines.items():
        (ann / f"ucf101_{subset}_split_1_rawframes.txt").write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    assert main(["prepare", str(ann), "--dataset", "mmaction2_rawframes", "--video-root", str(root),
                 "--out", str(cache), "--flow-from", str(root), "--clip-len", "4", "--stride", "1",
                 "--no-progress"]) == 0
    assert "6 videos: 6 prepared" in capsys.readouterr().out
    records = read_split("mmaction2_rawframes", ann, 1, "train", video_root=root)
    ds = MCLPretrainDataset(root, [r.path for r in records], MotionCache(cache),
                            {"clip_len": 4, "stride": 1, "size": 16}, (2, 2, 2))
    item = ds[0]
    assert len(ds) == 4 and item["video_id"] == "Jump/v_Jump_g00_c01"
    assert item["q"].shape == (3, 4, 16, 16) and torch.isfinite(item["target"]).all()
    out = tmp_path / "eval"
    assert main(["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--backbone-options",
                 '{"widths": [2, 2, 2, 2]}', "--data", str(root), "--annotations", str(ann), "--dataset",
                 "mmaction2_rawframes", "--protocol", "knn", "--clip-len", "2", "--num-clips", "1",
                 "--size", "16", "--knn-k", "1", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (res["num_train"], res["num_test"]) == (4, 2)
