"""`mcl prepare --config NAME` builds the cache for that config's clips; a pretraining batch larger than
the training set is one line naming both numbers."""

import json

from mcl_video.cli import main
from mcl_video.motion.cache import CacheSettings, MotionCache, init_cache
from test_features import write_video  # tests/ is on sys.path (pytest rootdir)


def _ucf_style(tmp_path, n):
    root, ann = tmp_path / "videos", tmp_path / "ann"
    (root / "Walk").mkdir(parents=True)
    ann.mkdir()
    rels = [f"Walk/v_Walk_g0{g + 1}_c01.mp4" for g in range(n)]
    for g, rel in enumerate(rels):
        write_video(root / rel, num_frames=20, h=32, w=40, seed=g)
    (ann / "classInd.txt").write_text("1 Walk\n")
    (ann / "trainlist01.txt").write_text("".join(f"{r} 1\n" for r in rels))
    (ann / "testlist01.txt").write_text("".join(f"{r}\n" for r in rels[:1]))
    return root, ann


def test_prepare_takes_clip_settings_from_the_named_config(tmp_path, capsys):
    root, _ = _ucf_style(tmp_path, 1)
    out = tmp_path / "motion"
    assert main(["prepare", str(root), "--out", str(out), "--config", "demo_cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "clip scores for clip_len 8, stride 2 (clip_len and stride from the config demo_cpu)" in printed
    cache = MotionCache(out)
    assert (cache.clip_len, cache.stride) == (8, 2)
    motion = cache.get(cache.video_ids()[0])
    assert motion.clip_scores.shape == (20 - 8 * 2 + 1,)  # num_frames - clip_len * stride + 1
    # a value given on the command line wins, and the line says which came from where
    out2 = tmp_path / "motion2"
    assert main(["prepare", str(root), "--out", str(out2), "--config", "demo_cpu", "--stride", "1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "clip scores for clip_len 8, stride 1 (clip_len from the config demo_cpu)" in printed
    assert json.loads((out2 / "meta.json").read_text())["settings"]["stride"] == 1


def test_pretrain_batch_larger_than_the_dataset_is_one_line(tmp_path, capsys):
    root, ann = _ucf_style(tmp_path, 3)
    cache = tmp_path / "motion"
    init_cache(cache, CacheSettings(clip_len=8, stride=2))
    status = main(["pretrain", "--config", "demo_cpu", f"data={ann}", f"video_root={root}", f"cache={cache}",
                   f"out={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == [f"error: config: batch_size=32 is larger than the 3 training videos of data={ann}; "
                   "use batch_size <= 3"]
