"""The built-in motion benchmark: layout, determinism, decodability and per-class kinematics."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import av
import numpy as np
import pytest

from mcl_video.cli import main
from mcl_video.data.sprites import MOTION_CLASSES, SHAPES, draw_motion, motion_offsets, sprite_coverage
from mcl_video.data.synth import SynthConfig, draw_video, idle_clock, make_benchmark, render_video

TINY = dict(classes=2, train_per_class=2, test_per_class=1, frames=16, size=32)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def snapshot(root: Path) -> dict:
    """Everything that must be reproducible: annotation files, meta.json, decoded frames."""
    files = {p.name: p.read_text() for p in sorted((root / "annotations").iterdir())}
    files["meta.json"] = (root / "meta.json").read_text()
    frames = {str(p.relative_to(root)): decode(p) for p in sorted((root / "videos").rglob("*.mp4"))}
    return {"files": files, "frames": frames}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The same tiny set made twice (library with 1 worker, CLI with 2 workers) and once with seed 1."""
    base = tmp_path_factory.mktemp("synth")
    a = make_benchmark(base / "a", seed=0, workers=1, **TINY)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main(["synth", str(base / "b"), "--seed=0", "--workers=2", *args]) == 0
    c = make_benchmark(base / "c", seed=1, workers=1, **TINY)
    return a, base / "b", c


def test_same_seed_identical_and_workers_do_not_matter(tiny):
    # the rendered frames are a pure function of (config, seed); the H.264 bitstream of the same frames
    # was seen to differ in the last levels of a few pixels between processes (libx264 at one thread), so
    # the decoded videos are compared to within the encoder's own error
    a, b, _ = tiny
    sa, sb = snapshot(a), snapshot(b)
    assert sa["files"] == sb["files"]
    assert sa["frames"].keys() == sb["frames"].keys() and len(sa["frames"]) == 6
    for key in sa["frames"]:
        diff = np.abs(sa["frames"][key].astype(int) - sb["frames"][key])
        assert diff.mean() < 1.0 and diff.max() <= 24, key
    cfg = SynthConfig(seed=0, **TINY)
    for index in range(3):
        first = render_video(cfg, draw_video(cfg, index, index % 2))
        np.testing.assert_array_equal(first, render_video(cfg, draw_video(cfg, index, index % 2)))


def test_different_seed_differs(tiny):
    a, _, c = tiny
    sa, sc = snapshot(a), snapshot(c)
    assert sa["files"]["trainlist01.txt"] == sc["files"]["trainlist01.txt"]  # same layout...
    assert sa["files"]["meta.json"] != sc["files"]["meta.json"]  # ...different draws
    for key in sa["frames"]:
        assert np.abs(sa["frames"][key].astype(int) - sc["frames"][key]).mean() > 5


def test_every_video_decodes_to_stated_shape_and_matches_renderer(tiny):
    root = tiny[0]
    meta = json.loads((root / "meta.json").read_text())
    cfg = SynthConfig(**meta["config"])
    assert len(meta["videos"]) == 6
    for video in meta["videos"]:
        frames = decode(root / "videos" / video["path"])
        assert frames.shape == (16, 32, 32, 3)
        # meta.json alone re-renders the video; H.264 at CRF 18 keeps the luma close (chroma is 4:2:0)
        diff = (frames.astype(float) - render_video(cfg, video)) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(diff).mean() < 2.5
        assert video["shape"] in SHAPES and video["motion"] == MOTION_CLASSES[video["label"] - 1]
    assert (root / "contact_sheet.png").stat().st_size > 1000


def test_annotations_parse_as_ucf101(tiny):
    ann = tiny[0] / "annotations"
    classes = dict(line.split() for line in ann.joinpath("classInd.txt").read_text().splitlines())
    assert classes == {"1": "HorizontalOscillation", "2": "VerticalOscillation"}
    name_re = re.compile(r"^(\w+)/v_(\w+)_g(\d\d)_c(\d\d)\.mp4$")
    groups = {"train": set(), "test": set()}
    for subset, lines in (("train", ann.joinpath("trainlist01.txt").read_text().splitlines()),
                          ("test", ann.joinpath("testlist01.txt").read_text().splitlines())):
        assert len(lines) == (4 if subset == "train" else 2)
        for line in lines:
            parts = line.split()
            match = name_re.match(parts[0])
            assert match and match[1] == match[2] and (tiny[0] / "videos" / parts[0]).is_file()
            if subset == "train":
                assert len(parts) == 2 and classes[parts[1]] == match[1]
            else:
                assert len(parts) == 1  # UCF101 test lists carry no label
            groups[subset].add((match[1], match[3]))
    assert not groups["train"] & groups["test"]  # a group never spans the split, as in UCF101


# ------------------------------------------------------------------------------ kinematics per class
def draws(name: str, n: int = 6, **options):
    cfg = SynthConfig(**options)
    k = MOTION_CLASSES.index(name)
    for i in range(n):
        video = draw_video(cfg, 1000 * k + i, k)
        tr = {key: np.asarray(v) for key, v in video["trajectory"].items()}
        yield video["params"], tr


TOL = 2e-3  # trajectories are stored with 3 decimals


@pytest.mark.parametrize("name", MOTION_CLASSES)
def test_camera_pans_linearly_and_slowly(name):
    for _, tr in draws(name, pan_speed=0.7):
        for axis in ("camera_x", "camera_y"):
            assert np.abs(np.diff(tr[axis], 2)).max() < TOL
        step = math.hypot(tr["camera_x"][1] - tr["camera_x"][0], tr["camera_y"][1] - tr["camera_y"][0])
        assert step <= 0.7 + TOL


def test_oscillations_move_along_one_axis_only():
    for name, still, moving in (("HorizontalOscillation", "y", "x"), ("VerticalOscillation", "x", "y")):
        for p, tr in draws(name):
            m = p["motion"]
            assert np.ptp(tr[still]) < TOL and np.ptp(tr["angle"]) < TOL and np.ptp(tr["scale"]) < TOL
            t = np.arange(len(tr[moving]))
            expected = p["anchor"][0 if moving == "x" else 1] + m["amplitude"] * np.sin(
                2 * math.pi * t / m["period"] + m["phase"])
            np.testing.assert_allclose(tr[moving], expected, atol=TOL)


def test_orbit_has_constant_radius_and_one_sense():
    senses = set()
    for p, tr in draws("CircularOrbit", n=10):
        rx, ry = tr["x"] - p["anchor"][0], tr["y"] - p["anchor"][1]
        np.testing.assert_allclose(np.hypot(rx, ry), p["motion"]["amplitude"], atol=TOL)
        cross = rx[:-1] * ry[1:] - ry[:-1] * rx[1:]
        assert np.all(np.sign(cross) == p["motion"]["direction"])
        senses.add(p["motion"]["direction"])
    assert senses == {-1, 1}  # both senses, so a flipped orbit is still an orbit


def test_spin_turns_at_constant_rate_in_place():
    for p, tr in draws("Spin"):
        assert np.ptp(tr["x"]) < TOL and np.ptp(tr["y"]) < TOL and np.ptp(tr["scale"]) < TOL
        rate = p["motion"]["direction"] * 2 * math.pi / p["motion"]["period"]
        np.testing.assert_allclose(np.diff(tr["angle"]), rate, atol=TOL)


def test_scale_pulse_only_changes_size():
    for p, tr in draws("ScalePulse"):
        assert np.ptp(tr["x"]) < TOL and np.ptp(tr["y"]) < TOL and np.ptp(tr["angle"]) < TOL
        a = p["motion"]["amplitude"]
        assert tr["scale"].min() >= 1 - a - TOL and tr["scale"].max() <= 1 + a + TOL
        assert np.ptp(tr["scale"]) > a  # 48 frames cover at least one period of <= 16 frames


def test_bounce_falls_with_constant_gravity_onto_a_floor():
    for p, tr in draws("Bounce"):
        m, floor = p["motion"], p["anchor"][1]
        assert np.ptp(tr["x"]) < TOL and tr["y"].max() <= floor + TOL
        acc = np.diff(tr["y"], 2)
        gravity = 8 * m["amplitude"] / m["period"] ** 2
        free = np.abs(acc - gravity) < 1e-2
        assert free.mean() > 0.6  # all but the frames around a bounce
        assert np.all(acc < gravity + 1e-2)  # a bounce only ever pushes upwards
        assert tr["y"].min() <= floor - 0.8 * m["amplitude"]


def test_zigzag_drifts_sideways_at_constant_speed_with_constant_vertical_speed():
    directions = set()
    for p, tr in draws("ZigZag", n=10):
        m = p["motion"]
        np.testing.assert_allclose(np.diff(tr["x"]), m["direction"] * m["speed"], atol=TOL)
        vy = np.abs(np.diff(tr["y"]))
        assert np.mean(np.abs(vy - 4 * m["amplitude"] / m["period"]) < 1e-2) > 0.6
        directions.add(m["direction"])
    assert directions == {-1, 1}


def test_straight_line_has_zero_acceleration():
    for p, tr in draws("StraightLine"):
        assert np.abs(np.diff(tr["x"], 2)).max() < TOL and np.abs(np.diff(tr["y"], 2)).max() < TOL
        speed = np.hypot(np.diff(tr["x"]), np.diff(tr["y"]))
        np.testing.assert_allclose(speed, p["motion"]["speed"], atol=TOL)


def test_flipped_motion_stays_in_its_class():
    """Mirroring x maps an orbit to the opposite sense (phase pi - phase) and an oscillation to phase + pi."""
    orbit = {"class": "CircularOrbit", "period": 9.0, "phase": 0.7, "angle0": 0.0, "amplitude": 10.0,
             "direction": 1}
    a = motion_offsets(orbit, 30)
    b = motion_offsets({**orbit, "direction": -1, "phase": math.pi - 0.7}, 30)
    np.testing.assert_allclose(-a["dx"], b["dx"], atol=1e-9)
    np.testing.assert_allclose(a["dy"], b["dy"], atol=1e-9)
    osc = {"class": "HorizontalOscillation", "period": 7.0, "phase": 0.3, "angle0": 0.0, "amplitude": 5.0}
    c = motion_offsets(osc, 30)
    d = motion_offsets({**osc, "phase": 0.3 + math.pi}, 30)
    np.testing.assert_allclose(-c["dx"], d["dx"], atol=1e-9)


# ---------------------------------------------------------------------------------- rasterising
@pytest.mark.parametrize("shape", SHAPES)
def test_sprite_coverage_is_centred_and_antialiased(shape):
    cx, cy = np.array([10.3, 12.7]), np.array([9.6, 11.1])
    cover, _, y0, x0 = sprite_coverage(shape, cx, cy, [0.4, 2.0], [1.0, 1.3], 6.0, 32, 32)
    for i in range(2):
        rows, cols = np.mgrid[0:cover.shape[1], 0:cover.shape[2]] + 0.5
        w = cover[i]
        assert abs((w * (cols + x0[i])).sum() / w.sum() - cx[i]) < 0.1
        assert abs((w * (rows + y0[i])).sum() / w.sum() - cy[i]) < 0.1
        assert ((w > 0) & (w < 1)).any()  # soft edges
    assert cover[1].sum() / cover[0].sum() == pytest.approx(1.3**2, rel=0.05)


def test_rendered_sprite_sits_where_trajectory_minus_camera_says():
    cfg = SynthConfig(frames=12, size=48, background_contrast=0.0, distractors=(0, 0), grayscale=True,
                      pan_speed=0.8)
    for k in range(len(MOTION_CLASSES)):
        video = draw_video(cfg, k, k)
        frames = render_video(cfg, video).astype(int)
        bg = np.round(np.asarray(video["params"]["background"]) * 255).astype(int)
        tr = video["trajectory"]
        for t in range(cfg.frames):
            ys, xs = np.nonzero(np.abs(frames[t] - bg).max(axis=-1) > 0)
            assert abs(xs.mean() + 0.5 - (tr["x"][t] - tr["camera_x"][t])) < 0.75
            assert abs(ys.mean() + 0.5 - (tr["y"][t] - tr["camera_y"][t])) < 0.75


def test_grayscale_has_no_colour_and_options_are_checked(tmp_path):
    cfg = SynthConfig(frames=4, size=32, grayscale=True)
    frames = render_video(cfg, draw_video(cfg, 0, 0)).astype(int)
    assert np.abs(frames - frames[..., :1]).max() == 0
    with pytest.raises(ValueError, match="even"):
        SynthConfig(size=33)
    with pytest.raises(ValueError, match="period"):
        SynthConfig(period=(10, 5))
    with pytest.raises(TypeError, match="unknown option"):
        make_benchmark(tmp_path / "x", colour=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        make_benchmark(tmp_path / "full", classes=1, train_per_class=1, test_per_class=0, frames=2, size=16)


def test_read_split_reads_the_benchmark(tiny):
    from mcl_video.data import read_split

    root = tiny[0]
    train = read_split("ucf101", root / "annotations", 1, "train", video_root=root / "videos")
    test = read_split("ucf101", root / "annotations", 1, "test", video_root=root / "videos")
    assert len(train) == 4 and len(test) == 2
    assert [r.label for r in train] == [0, 0, 1, 1] and [r.label for r in test] == [0, 1]
    assert all(r.class_name == r.path.split("/")[0] for r in train + test)


@pytest.mark.parametrize("options", [{}, dict(sprite_size=(0.25, 0.4), period=(6, 10), pan_speed=0.3)])
def test_sprite_stays_inside_the_panning_window(options):
    cfg = SynthConfig(**options)
    for k in range(len(MOTION_CLASSES)):
        for i in range(8):
            video = draw_video(cfg, i, k)
            tr = {key: np.asarray(v) for key, v in video["trajectory"].items()}
            r = video["params"]["sprite"]["radius"] * tr["scale"]
            for pos, cam in ((tr["x"], tr["camera_x"]), (tr["y"], tr["camera_y"])):
                assert np.all(pos - cam >= r - TOL) and np.all(pos - cam <= cfg.size - r + TOL)


# ------------------------------------------------------------------------------------ regime knobs
def test_default_regime_is_the_whole_frame_with_no_rest():
    cfg = SynthConfig()
    assert cfg.region_side == cfg.size
    for k in range(len(MOTION_CLASSES)):
        video = draw_video(cfg, k, k)
        assert video["params"]["region"] is None and video["params"]["resting"] == []
        motion, tr = video["params"]["motion"], video["trajectory"]
        off = motion_offsets(motion, cfg.frames)  # the plain clock 0..T-1
        assert np.allclose(np.asarray(tr["x"]) - off["dx"], tr["x"][0] - off["dx"][0], atol=TOL)


@pytest.mark.parametrize("fraction", [0.05, 0.25])
def test_moving_region_fraction_is_respected(fraction):
    cfg = SynthConfig(size=96, moving_region=fraction, pan_speed=0.5, distractors=(0, 0))
    side = cfg.region_side
    assert abs(side * side / 96**2 - fraction) < 2 * side / 96**2 + 1e-9  # rounding of the side only
    lo_r, hi_r = (f * side / 2 for f in cfg.sprite_size)
    corners = []
    for k in range(len(MOTION_CLASSES)):
        for i in range(4):
            video = draw_video(cfg, 10 * k + i, k)
            tr = {key: np.asarray(v) for key, v in video["trajectory"].items()}
            x0, y0, s = video["params"]["region"]  # scene coordinates
            assert s == side
            r = video["params"]["sprite"]["radius"]
            assert lo_r - 1e-9 <= r <= hi_r + 1e-9  # the sprite scales with the region
            r = r * tr["scale"]
            for pos, cam, c in ((tr["x"], tr["camera_x"], x0), (tr["y"], tr["camera_y"], y0)):
                assert np.all(pos - r >= c - TOL) and np.all(pos + r <= c + side + TOL)  # inside the region
                assert np.all(c - cam >= -TOL) and np.all(c + side - cam <= 96 + TOL)  # region in view
            corners.append((x0, y0))
    assert len(set(corners)) > 1  # the region's place is drawn per video


def test_idle_segments_rest_the_sprite_and_nothing_else_changes():
    base = SynthConfig(frames=40, pan_speed=0.0)
    cfg = SynthConfig(frames=40, pan_speed=0.0, idle_fraction=0.3, idle_segments=2)
    idle = round(0.3 * 40)
    for k in range(len(MOTION_CLASSES)):
        plain, video = draw_video(base, 5 + k, k), draw_video(cfg, 5 + k, k)
        assert video["params"]["sprite"] == plain["params"]["sprite"]  # other draws untouched
        assert video["params"]["background"] == plain["params"]["background"]
        resting = video["params"]["resting"]
        assert idle - 1 <= len(resting) <= idle  # a rest at frame 0 has no previous frame to repeat
        tr = {key: np.asarray(v) for key, v in video["trajectory"].items()}
        for key in ("x", "y", "angle", "scale"):
            assert np.all(tr[key][resting] == tr[key][np.asarray(resting) - 1]), (k, key)
        frames = render_video(cfg, video)
        for t in resting:
            assert np.array_equal(frames[t], frames[t - 1])  # no pan: a resting frame repeats
        moving = [t for t in range(1, 40) if t not in resting]
        changed = [not np.array_equal(frames[t], frames[t - 1]) for t in moving]
        assert np.mean(changed) > 0.9, k


def test_idle_clock_stretches():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        clock = idle_clock(32, 10, 3, rng)
        step = np.diff(clock)
        assert set(np.unique(step)) <= {0.0, 1.0} and clock[0] == 0
        stopped = np.flatnonzero(np.r_[1.0, step] == 0)  # frames that repeat the previous pose
        assert 9 <= len(stopped) <= 10
        stretches = 1 + np.count_nonzero(np.diff(stopped) > 1) if len(stopped) else 0
        assert 1 <= stretches <= 3
    assert idle_clock(8, 0, 2, np.random.default_rng(0)).tolist() == list(range(8))


def test_distractor_scale_sizes_the_distractors():
    cfg = SynthConfig(distractors=(3, 3), distractor_scale=2.0, moving_region=0.5, size=64)
    lo, hi = (f * cfg.region_side / 2 for f in cfg.sprite_size)
    radii = [d["radius"] for k in range(4) for d in draw_video(cfg, k, k)["params"]["distractors"]]
    assert len(radii) == 12 and all(2 * lo - 1e-9 <= r <= 2 * hi + 1e-9 for r in radii)
    with pytest.raises(ValueError, match="moving_region"):
        SynthConfig(moving_region=0.0)
    with pytest.raises(ValueError, match="idle_fraction"):
        SynthConfig(idle_fraction=0.95)


def test_cli_passes_the_regime_knobs(tmp_path):
    out = tmp_path / "r"
    assert main(["synth", str(out), "--classes=1", "--train-per-class=1", "--test-per-class=0", "--frames=8",
                 "--size=32", "--moving-region=0.5", "--idle-fraction=0.25", "--distractor-scale=1.5",
                 "--workers=1"]) == 0
    recorded = json.loads((out / "meta.json").read_text())["config"]
    assert recorded["moving_region"] == 0.5 and recorded["idle_fraction"] == 0.25
    assert recorded["distractor_scale"] == 1.5 and recorded["idle_segments"] == 2


def reversed_draw(m: dict, frames: int) -> tuple[dict, tuple[float, float]]:
    """The parameters of the same class whose motion is ``m``'s played backwards, and the constant
    position shift between the two (absorbed by the anchor): the analytic time reversal of each class."""
    m2, end, two_pi = dict(m), frames - 1, 2 * math.pi
    name, p, ph = m["class"], m["period"], m["phase"]
    shift = (0.0, 0.0)
    if name in ("HorizontalOscillation", "VerticalOscillation", "ScalePulse"):  # sin(c - x) = sin(x + pi - c)
        m2["phase"] = math.pi - (two_pi * end / p + ph)
    elif name == "CircularOrbit":
        m2["direction"], m2["phase"] = -m["direction"], m["direction"] * two_pi * end / p + ph
    elif name == "Spin":
        m2["direction"], m2["angle0"] = -m["direction"], m["angle0"] + m["direction"] * two_pi * end / p
    elif name in ("Bounce", "ZigZag"):  # tau(1 - tau) and the triangle wave are even about a period
        m2["phase"] = -two_pi * (end / p + ph / two_pi)
        if name == "ZigZag":
            m2["direction"] = -m["direction"]
            shift = (m["direction"] * m["speed"] * end, 0.0)
    elif name == "StraightLine":
        m2["heading"] = m["heading"] + math.pi
        shift = (m["speed"] * math.cos(m["heading"]) * end, m["speed"] * math.sin(m["heading"]) * end)
    return m2, shift


@pytest.mark.parametrize("name", MOTION_CLASSES)
def test_every_class_is_closed_under_time_reversal_without_damping(name):
    # why the order of clips cannot be learned on the default benchmark: a video played backwards is
    # another draw of its class (phases uniform, both senses drawn, headings uniform)
    cfg = SynthConfig(frames=40)
    for seed in range(5):
        m = draw_motion(name, np.random.default_rng(seed), cfg)
        forward = motion_offsets(m, 40)
        m2, (sx, sy) = reversed_draw(m, 40)
        back = motion_offsets(m2, 40)
        for key, shift in (("dx", sx), ("dy", sy), ("angle", 0.0), ("scale", 0.0)):
            want = forward[key][::-1]
            got = back[key] + shift
            if key == "angle":  # equal as rotations
                got, want = np.cos(got - want), np.ones(40)
            np.testing.assert_allclose(got, want, atol=1e-9, err_msg=f"{name} {key}")


@pytest.mark.parametrize("name", MOTION_CLASSES)
def test_damping_is_an_exponential_envelope_that_breaks_time_reversal(name):
    frames, d = 40, 0.6
    plain_cfg, cfg = SynthConfig(frames=frames), SynthConfig(frames=frames, damping=d)
    m0 = draw_motion(name, np.random.default_rng(3), plain_cfg)
    m = draw_motion(name, np.random.default_rng(3), cfg)
    assert "damping" not in m0 and m == {**m0, "damping": d}  # same draws, the knob recorded when on
    t = np.arange(frames, dtype=np.float64)
    env = (1 - d) ** (t / (frames - 1))
    travelled = np.r_[0.0, np.cumsum((env[1:] + env[:-1]) / 2)]  # trapezoid integral of the envelope
    plain, damped = motion_offsets(m0, frames), motion_offsets(m, frames)
    if name in ("HorizontalOscillation", "VerticalOscillation", "CircularOrbit", "Bounce"):
        for key in ("dx", "dy"):
            np.testing.assert_allclose(damped[key], env * plain[key], atol=1e-9)
    elif name == "ScalePulse":
        np.testing.assert_allclose(damped["scale"] - 1, env * (plain["scale"] - 1), atol=1e-9)
    elif name == "Spin":
        rate = np.diff(damped["angle"]) / np.diff(plain["angle"])
        np.testing.assert_allclose(rate, np.diff(travelled), rtol=1e-3)
    elif name in ("StraightLine", "ZigZag"):
        np.testing.assert_allclose(damped["dx"], plain["dx"][1] * travelled, rtol=1e-3, atol=1e-9)
    # the motion slows down: the pose changes less per frame in the last quarter than in the first
    change = sum(np.abs(np.diff(damped[k])) for k in ("dx", "dy", "angle", "scale"))
    assert change[-10:].sum() < 0.75 * change[:10].sum(), name
    # and the reversed video is no longer a draw of the class: its reversal does not match
    m2, (sx, sy) = reversed_draw(m, frames)
    back = motion_offsets(m2, frames)
    mismatch = [np.abs(back[k][::-1] - damped[k] - s).max() for k, s in (("dx", -sx), ("dy", -sy),
                                                                           ("scale", 0.0))]
    mismatch.append(np.abs(1 - np.cos(back["angle"][::-1] - damped["angle"])).max())
    assert max(mismatch) > 1e-3, name


def test_damping_off_leaves_the_benchmark_as_it_was(tmp_path):
    assert "damping" not in SynthConfig().recorded()  # earlier benchmarks' meta.json still match
    assert SynthConfig(damping=0.5).recorded()["damping"] == 0.5
    for k in range(len(MOTION_CLASSES)):
        assert draw_video(SynthConfig(), k, k) == draw_video(SynthConfig(damping=0.0), k, k)
    with pytest.raises(ValueError, match="damping"):
        SynthConfig(damping=0.95)
    out = tmp_path / "d"
    assert main(["synth", str(out), "--classes=1", "--train-per-class=1", "--test-per-class=0", "--frames=8",
                 "--size=32", "--damping=0.5", "--workers=1"]) == 0
    assert json.loads((out / "meta.json").read_text())["config"]["damping"] == 0.5
