"""The positive-control benchmark (``mcl synth --periphery-textures``), the oracle crop and the samplers'
mechanism checks (periphery in crops, idle clips), on generated benchmarks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mcl_video.cli import main
from mcl_video.data import read_split
from mcl_video.data.sprites import _paint
from mcl_video.data.synth import (
    ACTOR_LEVEL,
    REGION_LEVEL,
    SynthConfig,
    draw_video,
    make_benchmark,
    motion_boxes,
    render_video,
)
from mcl_video.data.textures import TEXTURE_FAMILIES, render_mark, render_texture
from mcl_video.motion.cache import CacheSettings, MotionCache
from mcl_video.motion.prepare import prepare
from mcl_video.sampling.dataset import DatasetError, MCLPretrainDataset
from mcl_video.sampling.mechanism import compare_samplers, format_shares, sampler_shares
from mcl_video.sampling.spatial import CropBox, OracleCrop

PC = dict(classes=5, frames=64, size=48, seed=0, moving_region=0.36, pan_speed=0.0, distractors=(0, 0),
          idle_fraction=0.3, periphery_textures=6)


def u8(level: float) -> int:
    return int(np.round(level * 255))


# ------------------------------------------------------------------------------ defaults unchanged
# sha256 of the JSON draws and of the rendered frames of videos 0-5, computed with the code as it was
# before the positive-control options existed (same seeds and options)
BEFORE = [
    (dict(classes=3, frames=20, size=32, seed=7),
     "1465dc4974ff5219429abdba627baf73e33d34145646e0128bd8fea11660d3b1",
     "4c2b72c29f53e126ca86feadc4d0c150fec886f1a0bd713a63d8a8c1e0154ff0"),
    (dict(classes=3, frames=20, size=48, seed=3, moving_region=0.3, idle_fraction=0.4, damping=0.3),
     "f27a09dd6d20bef6205aabdf8847ce81decbc4030c153b78e45557d09f1d21c1",
     "7499da21be798dcef676e303bfa2a5879b8d5488ff5c5dfdde3c2319b2d82b0e"),
]


@pytest.mark.parametrize("options,draws,frames", BEFORE)
def test_defaults_are_bit_identical_to_the_benchmark_before_the_options(options, draws, frames):
    for explicit in ({}, {"periphery_textures": 0, "shared_texture": False, "rest_mark": False}):
        cfg = SynthConfig(**options, **explicit)
        hd, hf = hashlib.sha256(), hashlib.sha256()
        for i in range(6):
            video = draw_video(cfg, i, i % 3)
            hd.update(json.dumps(video, sort_keys=True).encode())
            hf.update(render_video(cfg, video).tobytes())
        assert (hd.hexdigest(), hf.hexdigest()) == (draws, frames)
        recorded = cfg.recorded()
        assert not {"periphery_textures", "shared_texture", "rest_mark"} & set(recorded)


# ------------------------------------------------------------------------------ the benchmark
def sprite_mask(video: dict, cfg: SynthConfig) -> np.ndarray:
    """(T, H, W) bool: pixels the actor touches in each frame."""
    canvas = np.ones((cfg.frames, cfg.size, cfg.size, 3), np.float32)
    tr = video["trajectory"]
    sprite = {**video["params"]["sprite"], "colour": [0.0] * 3, "mark_colour": [0.0] * 3}
    x = np.asarray(tr["x"]) - np.asarray(tr["camera_x"])
    y = np.asarray(tr["y"]) - np.asarray(tr["camera_y"])
    _paint(canvas, sprite, x, y, tr["angle"], tr["scale"])
    return canvas[..., 0] < 1.0


@pytest.mark.parametrize("index", [0, 7, 13, 26])
def test_texture_only_outside_the_actors_region_which_is_flat(index):
    cfg = SynthConfig(**PC)
    video = draw_video(cfg, index, index % 5)
    frames = render_video(cfg, video)
    top, left, h, w = video["motion_box"]
    assert h == w == cfg.region_side and 0 <= top <= cfg.size - h and 0 <= left <= cfg.size - w
    inside = np.zeros((cfg.size, cfg.size), bool)
    inside[top : top + h, left : left + w] = True
    texture = np.round(render_texture(video["params"]["texture"], cfg.size, cfg.size) * 255).astype(np.uint8)
    actor = sprite_mask(video, cfg)
    assert not (actor & ~inside).any()  # the actor never leaves its region
    for t in range(cfg.frames):
        np.testing.assert_array_equal(frames[t][~inside], np.repeat(texture[~inside, None], 3, axis=1))
        flat = inside & ~actor[t]
        assert (frames[t][flat] == u8(REGION_LEVEL)).all()
    # the periphery is high-contrast: both texture levels are there
    assert texture[~inside].min() <= u8(0.15) and texture[~inside].max() >= u8(0.85)


def test_actor_appearance_is_the_same_in_every_video_and_families_vary():
    cfg = SynthConfig(**PC)
    videos = [draw_video(cfg, i, i % 5) for i in range(30)]
    sprites = {json.dumps(v["params"]["sprite"], sort_keys=True) for v in videos}
    assert len(sprites) == 1
    sprite = videos[0]["params"]["sprite"]
    assert sprite["shape"] == "square" and sprite["colour"] == [ACTOR_LEVEL] * 3
    assert {v["shape"] for v in videos} == {"square"}
    assert {v["params"]["background"][0] for v in videos} == {REGION_LEVEL}
    assert {v["texture_family"] for v in videos} == set(range(6))  # 30 draws of 6 families
    assert len({json.dumps(v["params"]["texture"]) for v in videos}) == 30  # unique per video
    # the motion is the default benchmark's draw of the same seed (same class, same parameters)
    plain = SynthConfig(**{**PC, "periphery_textures": 0})
    for i in (0, 11):
        a, b = draw_video(cfg, i, i % 5), draw_video(plain, i, i % 5)
        assert a["params"]["motion"] == b["params"]["motion"]


def test_shared_texture_control_is_the_same_videos_with_one_texture():
    cfg = SynthConfig(**PC)
    shared = SynthConfig(**PC, shared_texture=True)
    a = [draw_video(cfg, i, i % 5) for i in range(12)]
    b = [draw_video(shared, i, i % 5) for i in range(12)]
    assert len({json.dumps(v["params"]["texture"]) for v in b}) == 1
    assert len({v["texture_family"] for v in b}) == 1
    for va, vb in zip(a, b):
        assert va["trajectory"] == vb["trajectory"] and va["motion_box"] == vb["motion_box"]
        assert va["params"]["resting"] == vb["params"]["resting"]
    # the rendered periphery is then the same in every video
    peripheries = []
    for v in b[:4]:
        frame = render_video(shared, v)[0, :, :, 0].astype(int)
        top, left, h, w = v["motion_box"]
        frame[top : top + h, left : left + w] = -1
        peripheries.append(frame)
    for p in peripheries[1:]:
        both = (p >= 0) & (peripheries[0] >= 0)
        np.testing.assert_array_equal(p[both], peripheries[0][both])


@pytest.mark.parametrize("index", [2, 9, 17])
def test_rest_mark_shows_only_in_the_resting_frames(index):
    marked = SynthConfig(**PC, rest_mark=True)
    plain = SynthConfig(**PC)
    video = draw_video(marked, index, index % 5)
    assert {k: v for k, v in video["params"].items() if k != "rest_mark"} == \
        draw_video(plain, index, index % 5)["params"]
    resting = video["params"]["resting"]
    assert 0 < len(resting) < marked.frames
    a = render_video(marked, video).astype(int)
    b = render_video(plain, draw_video(plain, index, index % 5)).astype(int)
    differs = (a != b).any(axis=3)  # (T, H, W)
    moving = np.setdiff1d(np.arange(marked.frames), resting)
    assert not differs[moving].any()  # never outside the rest stretches
    mt, ml, mh, mw = video["params"]["rest_mark"]["box"]
    box = np.zeros(differs.shape[1:], bool)
    box[mt : mt + mh, ml : ml + mw] = True
    assert not differs[:, ~box].any()  # only inside the mark's box
    top, left, h, w = video["motion_box"]
    assert top <= mt and mt + mh <= top + h and left <= ml and ml + mw <= left + w  # inside the region
    actor = sprite_mask(video, marked)
    mark = np.round(render_mark(video["params"]["rest_mark"]) * 255)
    for t in resting:  # where the actor does not cover it, the mark is exactly its pattern
        free = ~actor[t][mt : mt + mh, ml : ml + mw]
        np.testing.assert_array_equal(a[t, mt : mt + mh, ml : ml + mw, 0][free], mark[free])


def test_options_are_checked():
    with pytest.raises(ValueError, match="moving_region < 1"):
        SynthConfig(**{**PC, "moving_region": 1.0})
    with pytest.raises(ValueError, match="pan_speed 0"):
        SynthConfig(**{**PC, "pan_speed": 0.3})
    with pytest.raises(ValueError, match="distractors 0 0"):
        SynthConfig(**{**PC, "distractors": (0, 1)})
    with pytest.raises(ValueError, match="periphery_textures must be"):
        SynthConfig(**{**PC, "periphery_textures": len(TEXTURE_FAMILIES) + 1})
    with pytest.raises(ValueError, match="shared_texture needs"):
        SynthConfig(shared_texture=True)
    with pytest.raises(ValueError, match="rest_mark needs"):
        SynthConfig(**{**PC, "idle_fraction": 0.0}, rest_mark=True)


def test_motion_boxes_contain_the_region_of_every_benchmark():
    meta = {"config": {"size": 48}, "videos": []}
    for cfg in (SynthConfig(**PC), SynthConfig(size=48, moving_region=0.3, frames=20), SynthConfig(frames=8)):
        meta["config"]["size"] = cfg.size
        meta["videos"] = [{"path": f"C/v{i}.mp4", **draw_video(cfg, i, 0)} for i in range(5)]
        boxes = motion_boxes(meta)
        assert sorted(boxes) == [f"C/v{i}" for i in range(5)]
        for i, video in enumerate(meta["videos"]):
            top, left, h, w = boxes[f"C/v{i}"]
            assert 0 <= top and 0 <= left and top + h <= cfg.size and left + w <= cfg.size
            tr = video["trajectory"]
            r = video["params"]["sprite"]["radius"] * np.asarray(tr["scale"])
            x = np.asarray(tr["x"]) - np.asarray(tr["camera_x"])
            y = np.asarray(tr["y"]) - np.asarray(tr["camera_y"])
            assert (x - r >= left - 1e-6).all() and (x + r <= left + w + 1e-6).all()
            assert (y - r >= top - 1e-6).all() and (y + r <= top + h + 1e-6).all()
    assert set(boxes.values()) == {(0, 0, 32, 32)}  # the default benchmark: the whole frame


def test_cli_writes_the_positive_control(tmp_path):
    out = tmp_path / "pc"
    assert main(["synth", str(out), "--classes=2", "--train-per-class=1", "--test-per-class=1", "--frames=16",
                 "--size=32", "--moving-region=0.4", "--pan-speed=0", "--distractors", "0", "0",
                 "--idle-fraction=0.25", "--periphery-textures=3", "--rest-mark", "--workers=1"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["periphery_textures"] == 3 and meta["config"]["rest_mark"] is True
    assert "shared_texture" not in meta["config"] and meta["texture_families"] == list(TEXTURE_FAMILIES[:3])
    assert all(0 <= v["texture_family"] < 3 and len(v["motion_box"]) == 4 for v in meta["videos"])
    assert main(["synth", str(tmp_path / "bad"), "--periphery-textures=3", "--workers=1"]) == 2


# ------------------------------------------------------------------------------ oracle crop
def test_oracle_crop_is_the_region_clipped_to_the_frame():
    crop = OracleCrop()
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert crop.sample((48, 48), (5, 7, 20, 21), rng) == CropBox(5, 7, 20, 21)
    assert crop.sample((48, 48), (-3, 40, 20, 21), rng) == CropBox(0, 40, 17, 8)
    assert rng.bit_generator.state == state  # draws nothing


class FakeCache:
    """A motion cache built from a benchmark's meta.json without flow: a frame's 7x7 map is the share of
    each cell covered by the actor's bounding square while it moves (0 while it rests); a clip's score
    is the sum of its frames' maps."""

    def __init__(self, meta: dict, clip_len: int, stride: int):
        self.clip_len, self.stride = clip_len, stride
        size, self.entries = int(meta["config"]["size"]), {}
        frames = int(meta["config"]["frames"])
        edges = np.linspace(0, size, 8)
        span = (clip_len - 1) * stride + 1
        for video in meta["videos"]:
            tr = video["trajectory"]
            r = video["params"]["sprite"]["radius"] * np.asarray(tr["scale"])
            x = np.asarray(tr["x"]) - np.asarray(tr["camera_x"])
            y = np.asarray(tr["y"]) - np.asarray(tr["camera_y"])

            def overlap(lo, hi):  # (T, 7) share of each cell's side inside [lo, hi)
                o = np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1])
                return np.clip(o, 0, None) / (edges[1] - edges[0])

            maps = overlap(y - r, y + r)[:, :, None] * overlap(x - r, x + r)[:, None, :]
            maps[video["params"]["resting"]] = 0.0
            scores = np.array([maps[s : s + span : stride].sum() for s in range(frames - span + 1)])
            self.entries[video["path"][: -len(".mp4")]] = type("Motion", (), dict(
                num_frames=frames, frame_hw=(size, size), clip_scores=scores.astype(np.float32),
                frame_maps=maps.astype(np.float32)))()

    def __contains__(self, vid):
        return vid in self.entries

    def get(self, vid):
        return self.entries[vid]


def fake_benchmark(n: int = 10) -> tuple[dict, list[str]]:
    cfg = SynthConfig(**PC, rest_mark=True)
    videos = [{"path": f"C{i % 5}/v{i}.mp4", **draw_video(cfg, i, i % 5)} for i in range(n)]
    return {"config": cfg.recorded(), "videos": videos}, [v["path"] for v in videos]


SAMPLING = {"clip_len": 8, "stride": 2, "size": 48, "crop_scale": (0.2, 0.5)}


def test_dataset_crop_boxes_select_the_oracle_crop(tmp_path):
    meta, paths = fake_benchmark(4)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    cache = FakeCache(meta, 8, 2)
    ds = MCLPretrainDataset(tmp_path, paths, cache, {**SAMPLING, "crop_boxes": str(tmp_path / "meta.json")})
    assert isinstance(ds.cropper, OracleCrop)
    boxes = motion_boxes(meta)
    for i in range(len(ds)):
        plan = ds.plan(i)
        assert {c.as_tuple() for c in plan.crops} == {boxes[plan.video_id]}
    (tmp_path / "other.json").write_text(json.dumps({**meta, "videos": meta["videos"][:1]}))
    ds = MCLPretrainDataset(tmp_path, paths, cache, {**SAMPLING, "crop_boxes": str(tmp_path / "other.json")})
    with pytest.raises(DatasetError, match="no motion box for video C1/v1"):
        ds.plan(1)
    with pytest.raises(DatasetError, match="crop_boxes .*missing.json"):
        MCLPretrainDataset(tmp_path, paths, cache, {**SAMPLING, "crop_boxes": str(tmp_path / "missing.json")})


# ------------------------------------------------------------------------------ mechanism checks
def test_mechanism_checks_exact_values_on_a_fixed_benchmark():
    meta, paths = fake_benchmark(10)
    cache = FakeCache(meta, 8, 2)
    result = compare_samplers(Path("."), paths, cache, meta, SAMPLING, epochs=4)
    got = {arm: {k: round(v, 6) if isinstance(v, float) else v for k, v in shares.items()}
           for arm, shares in result.items()}
    assert got == EXACT
    for share in ("periphery_crop_share", "periphery_area_share", "idle_clip_share", "idle_frame_share"):
        assert result["mcl"][share] < result["baseline"][share], share
    table = format_shares(result)
    assert "| idle_clip_share |" in table and table.count("\n") == 5


# the samplers' draws for SAMPLING's seed 0, epochs 0-3, on fake_benchmark(10) (a regression table: any
# change of the samplers' random streams or rules shows here)
EXACT = {
    "baseline": {"periphery_crop_share": 0.975, "periphery_area_share": 0.412351, "idle_clip_share": 0.6,
                 "idle_frame_share": 0.284375, "crops": 160, "clips": 120, "videos": 10, "epochs": 4},
    "mcl": {"periphery_crop_share": 0.94375, "periphery_area_share": 0.28984, "idle_clip_share": 0.5,
            "idle_frame_share": 0.227083, "crops": 160, "clips": 120, "videos": 10, "epochs": 4},
}


def test_the_oracle_crop_never_shows_the_periphery(tmp_path):
    meta, paths = fake_benchmark(6)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    oracle = {**SAMPLING, "crop_boxes": str(tmp_path / "meta.json")}
    shares = sampler_shares(tmp_path, paths, FakeCache(meta, 8, 2), meta, oracle, epochs=1)
    assert (shares["crops"], shares["clips"], shares["videos"]) == (24, 18, 6)
    assert shares["periphery_crop_share"] == shares["periphery_area_share"] == 0.0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("pc")
    make_benchmark(root / "data", train_per_class=2, test_per_class=0, workers=1, rest_mark=True,
                   **{**PC, "classes": 3})
    prepare(root / "data" / "annotations", root / "motion", CacheSettings(clip_len=8, stride=2),
            dataset="ucf101", video_root=root / "data" / "videos", progress=False, workers=1)
    return root


def test_mcl_samplers_meet_the_shortcut_less_on_a_prepared_benchmark(prepared):
    data = prepared / "data"
    records = read_split("ucf101", data / "annotations", 1, "train", video_root=data / "videos")
    result = compare_samplers(data / "videos", records, MotionCache(prepared / "motion"), data / "meta.json",
                              SAMPLING, epochs=4)
    assert result["baseline"]["crops"] == result["mcl"]["crops"] == 6 * 4 * 4
    for share in ("periphery_area_share", "idle_frame_share"):
        assert result["mcl"][share] < result["baseline"][share], (share, result)
