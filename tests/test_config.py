"""The typed, nested configs: shipped YAMLs, dotted overrides that keep the other keys of a section, short
and older flat names, unknown keys with a suggestion, bad values refused by rule, round trips."""

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

import mcl_video
from mcl_video.evaluation.finetune_config import FinetuneConfig, load_finetune_config
from mcl_video.models.mcl import MCLConfig
from mcl_video.sampling.dataset import PretrainSamplingConfig
from mcl_video.training import ConfigError, PretrainConfig, load_config
from mcl_video.training.builders import build_model, build_optimizer, feature_grid, model_config
from mcl_video.training.config import (
    config_from_dict,
    config_to_dict,
    describe,
    flatten,
    keys,
    replace,
    sampling_config,
    save_run_config,
)

CONFIGS = Path(mcl_video.__file__).parent / "configs"
SHIPPED = ["ucf101_p3d50.yaml", "k400_p3d50.yaml", "ucf101_r2plus1d18_112.yaml", "demo_cpu.yaml"]


def test_release_settings_in_shipped_configs():
    ucf = load_config(CONFIGS / "ucf101_p3d50.yaml")
    k400 = load_config(CONFIGS / "k400_p3d50.yaml")
    for c in (ucf, k400):
        m, o = c.model, c.optim
        assert (m.backbone, c.sampling.size, o.batch_size, m.queue_size) == ("p3d_resnet50", 224, 8, 131072)
        assert (m.temperature, m.ema, o.warmup_epochs, o.schedule) == (0.1, 0.999, 5.0, "cosine")
        assert (o.optimizer, o.momentum, o.weight_decay) == ("sgd", 0.9, 1e-4)
        # the release does not mask the query's own video, floors the cosine at 1e-6, uses a linear order head
        assert (m.mask_same_video, o.min_lr, m.order_head, m.init) == (False, 1e-6, "linear", "")
    assert (ucf.optim.epochs, ucf.optim.lr, ucf.model.use_order, ucf.data.dataset) == (
        200, 0.01, True, "ucf101")
    assert (k400.optim.epochs, k400.optim.lr, k400.model.use_order, k400.data.dataset) == (
        400, 0.02, False, "kinetics400")
    r21 = load_config(CONFIGS / "ucf101_r2plus1d18_112.yaml")
    assert (r21.model.backbone, r21.sampling.size, r21.sampling.clip_len) == ("r2plus1d_18", 112, 16)
    demo = load_config(CONFIGS / "demo_cpu.yaml")
    assert (demo.model.backbone, demo.optim.optimizer, demo.optim.lr, demo.optim.schedule) == (
        "tiny_r2plus1d", "adamw", 1e-3, "constant")
    assert (demo.sampling.colour, demo.sampling.crop_scale) == (False, (0.5, 1.0))
    pretraining = [p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("finetune_")]
    assert sorted(pretraining) == sorted(SHIPPED)  # finetune_*.yaml: tests/test_finetune_engine.py


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_builds_its_model(name):
    cfg = load_config(CONFIGS / name)
    small = cfg.model.backbone == "tiny_r2plus1d"
    with torch.device("cpu" if small else "meta"):  # large ones: built (structure only), not run
        model = build_model(cfg)
    assert model.queue.shape == (cfg.model.feat_dim, cfg.model.queue_size)
    assert model_config(cfg).momentum == cfg.model.ema
    optimizer = build_optimizer(cfg, model)
    assert type(optimizer).__name__.lower() == cfg.optim.optimizer
    grid = feature_grid(cfg)
    expected = {"p3d_resnet50": (4, 7, 7), "r2plus1d_18": (2, 7, 7)}.get(cfg.model.backbone)
    if expected:  # 16 x 224 -> 4 x 7 x 7 for the release model
        assert grid == expected
    if small:  # small enough to run one training forward/backward
        cfg = replace(cfg, size=32)  # keep the test quick on a shared 2-core machine
        grid = feature_grid(cfg)
        b, t, s = 2, cfg.sampling.clip_len, cfg.sampling.size
        batch = {k: torch.randn(b, 3, t, s, s) for k in ("q", "k0", "k1", "k2")}
        batch.update(target=torch.rand(b, *grid), order=torch.tensor([0, 1]), index=torch.tensor([0, 1]))
        loss, out = model(batch, order_weight=0.5, mal_weight=2.0)
        loss.backward()
        assert torch.isfinite(loss) and out["loss_mal"] > 0


def test_dotted_override_keeps_the_sections_other_keys(capsys):
    cfg = load_config("demo_cpu", ["sampling.motion_prob=0.5"])
    assert cfg.sampling.motion_prob == 0.5
    assert (cfg.sampling.colour, cfg.sampling.crop_scale, cfg.sampling.size) == (False, (0.5, 1.0), 32)
    # a mapping merges key by key too (the former sampling_options dict replaced the whole set)
    merged = load_config("demo_cpu", ["sampling_options={motion_prob: 0.4}"])
    assert (merged.sampling.motion_prob, merged.sampling.colour) == (0.4, False)
    from mcl_video.cli import main

    assert main(["pretrain", "--config", "demo_cpu", "sampling.motion_prob=0.5", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["sampling"]["motion_prob"] == 0.5
    assert printed["sampling"]["colour"] is False and printed["sampling"]["crop_scale"] == [0.5, 1.0]


def test_overrides_are_typed_by_key_and_short_and_flat_names_map():
    cfg = load_config(CONFIGS / "demo_cpu.yaml",
                      ["data=/x/ann", "cache=c", "out=o", "seed=7", "max_steps=12", "epochs=3", "resume=true",
                       "lr=2e-3", "use_mal=false", "backbone_options={widths: [8, 16]}", "warmup_epochs=1"])
    got = (cfg.data.annotations, cfg.data.cache, cfg.run.out, cfg.run.seed, cfg.optim.max_steps,
           cfg.optim.epochs)
    assert got == ("/x/ann", "c", "o", 7, 12, 3)
    assert cfg.run.resume is True and cfg.model.use_mal is False and cfg.optim.lr == 2e-3
    assert cfg.model.backbone_options == {"widths": [8, 16]} and cfg.optim.warmup_epochs == 1.0
    same = load_config(CONFIGS / "demo_cpu.yaml",
                       ["data.annotations=/x/ann", "data.cache=c", "run.out=o", "run.seed=7",
                        "optim.max_steps=12", "optim.epochs=3", "run.resume=true", "optim.lr=2e-3",
                        "model.use_mal=false", "model.backbone_options={widths: [8, 16]}",
                        "optim.warmup_epochs=1"])
    assert same == cfg
    # the former on/off switch still reads
    broken = [load_config(None, [f"motion_broken_negatives={v}"]).model.motion_broken_negatives
              for v in ("true", "false", "[shuffle]")]
    assert broken == [["shuffle", "repeat"], [], ["shuffle"]]
    assert load_config(None, ["--data=007"]).data.annotations == "007"  # strings stay strings
    assert load_config(None, ["min_frames=null"]).sampling.min_frames is None


def test_an_older_flat_file_and_checkpoint_config_read_as_today(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("backbone: tiny_r2plus1d\nlr: 0.002\nsize: 32\nclip_len: 8\ndata: ann\n"
                    "sampling_options: {colour: false, crop_scale: [0.5, 1.0]}\n"
                    "motion_broken_negatives: false\n")
    old = load_config(flat)
    assert (old.model.backbone, old.optim.lr, old.sampling.size, old.data.annotations) == (
        "tiny_r2plus1d", 0.002, 32, "ann")
    assert (old.sampling.colour, old.sampling.crop_scale) == (False, (0.5, 1.0))
    saved = yaml.safe_load(flat.read_text())  # as a checkpoint of an earlier version holds it
    assert config_from_dict(saved) == old


def test_unknown_key_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rat'; did you mean 'optim.lr'"):
        load_config(None, ["learning_rat=0.1"])
    with pytest.raises(ConfigError, match=r"command line: unknown config key 'wramup_epochs'; did you mean "
                                          r"'optim.warmup_epochs'\?"):
        load_config(None, ["wramup_epochs=2"])
    with pytest.raises(ConfigError, match=r"unknown config key 'sampling.motoin_prob'; did you mean "
                                          r"'sampling.motion_prob'"):
        load_config(None, ["sampling.motoin_prob=0.5"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  batch_sise: 4\n")
    expected = r"bad.yaml: unknown config key 'optim.batch_sise'; did you mean 'optim.batch_size'"
    with pytest.raises(ConfigError, match=expected):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"unknown config key 'moco_k'; did you mean 'model.queue_size'"):
        load_config(None, ["moco_k=10"])  # another code base's name -> ours


def test_a_short_name_in_two_sections_must_be_written_with_its_section():
    from pydantic import Field

    from mcl_video.training.schema import Config, Section, load

    class A(Section):
        size: int = 1

    class B(Section):
        size: int = 2

    class Two(Config):
        a: A = Field(default_factory=A)
        b: B = Field(default_factory=B)

    with pytest.raises(ConfigError, match=r"key 'size' is in several sections \(a.size, b.size\)"):
        load(Two, None, ["size=3"])
    assert load(Two, None, ["b.size=3"]).b.size == 3
    # the shipped configs have no such name: every key may be given without its section
    from mcl_video.training.schema import _short_names

    for cls in (PretrainConfig, FinetuneConfig):
        assert all(len(v) == 1 for v in _short_names(cls).values()), cls


def test_bad_values_are_errors_naming_key_value_and_range():
    for override, msg in [("seed=abc", "run.seed='abc' input should be a valid integer"),
                          ("lr=fast", "optim.lr='fast' input should be a valid number"),
                          ("resume=maybe", "run.resume='maybe' input should be a valid boolean"),
                          ("optimizer=adam", "optim.optimizer='adam' must be one of sgd or adamw"),
                          ("batch_size=0", "optim.batch_size=0 must be >= 1"),
                          ("lr=.inf", "optim.lr=inf must be a finite number"),
                          ("weight_decay=.nan", "optim.weight_decay=nan must be a finite number"),
                          ("seed=-1", "run.seed=-1 must be >= 0"),
                          ("ema=1", "model.ema=1 must be >= 0 and < 1"),
                          ("batch_size=true", "optim.batch_size=True expected a number, not true/false"),
                          ("seed", "must look like key=value"),
                          ("min_lr=0.5", "optim.min_lr=0.5 must not exceed optim.lr=0.01"),
                          ("sampling=3", "'sampling' is a section")]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(".", r"\.")):
            load_config(None, [override])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")


@pytest.mark.parametrize("text,message", [
    ("optim: {lr: [1,\n", "not valid YAML at line"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("- a\n- b\n", "a config must be a mapping"),
])
def test_malformed_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)
    path.write_bytes(b"optim:\n  lr: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(path)


def test_defaults_list_composes_files(tmp_path):
    (tmp_path / "base.yaml").write_text("optim: {lr: 0.5, epochs: 7}\nrun: {seed: 3}\n")
    (tmp_path / "child.yaml").write_text("defaults: [base.yaml]\noptim: {lr: 0.25}\n")
    cfg = load_config(tmp_path / "child.yaml", ["seed=4"])
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.run.seed) == (0.25, 7, 4)
    (tmp_path / "loop.yaml").write_text("defaults: [loop.yaml]\n")
    with pytest.raises(ConfigError, match="a cycle"):
        load_config(tmp_path / "loop.yaml")


def test_one_default_per_key_shared_with_the_library():
    # the sampling section is the dataset's PretrainSamplingConfig, minus the seed (run.seed)
    section = set(PretrainConfig.model_fields["sampling"].annotation.model_fields)
    assert section == {f.name for f in dataclasses.fields(PretrainSamplingConfig)} - {"seed"}
    defaults = PretrainSamplingConfig()
    cfg = PretrainConfig()
    for name in section - {"clip_len", "size"}:  # the release's pretraining input: 16 x 224
        assert getattr(cfg.sampling, name) == getattr(defaults, name), name
    built = sampling_config(replace(cfg, seed=5, motion_prob=0.3))
    assert (built.seed, built.motion_prob, built.size) == (5, 0.3, 224)
    mcl = MCLConfig(backbone="x")
    for name in ("feat_dim", "queue_size", "temperature", "mask_same_video", "use_intra", "use_order",
                 "use_mal", "saliency", "order_head", "shuffle_bn", "sync_bn"):
        assert getattr(cfg.model, name) == getattr(mcl, name), name
    assert cfg.model.ema == mcl.momentum


def test_round_trip_and_run_folder(tmp_path):
    cfg = load_config(CONFIGS / "ucf101_p3d50.yaml", ["data=a"])
    values = config_to_dict(cfg)
    assert config_from_dict(values) == cfg and set(values) == {"data", "model", "sampling", "optim", "run"}
    env = save_run_config(cfg, tmp_path)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == values
    assert set(env) >= {"git_commit", "python", "packages"} and env["packages"]["torch"]
    assert PretrainConfig() == config_from_dict(config_to_dict(PretrainConfig()))
    assert set(flatten(cfg)) == set(keys(PretrainConfig))


def test_help_lists_every_key_with_type_range_and_default(capsys):
    text = describe(PretrainConfig)
    for dotted in keys(PretrainConfig):
        assert f"  {dotted} (" in text, dotted
    assert "optim.lr (float > 0, default 0.01)" in text
    assert "sampling.motion_prob (float >= 0, <= 1, default 0.7)" in text
    from mcl_video.cli import main

    with pytest.raises(SystemExit) as done:
        main(["pretrain", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "sampling.crop_scale" in out and "run.resume_override" in out
    with pytest.raises(SystemExit) as done:
        main(["finetune", "--help"])
    assert done.value.code == 0 and "test.videos_per_batch" in capsys.readouterr().out


def test_cli_prints_resolved_config_and_rejects_unknown_keys(capsys):
    from mcl_video.cli import main

    assert main(["pretrain", "--config", str(CONFIGS / "demo_cpu.yaml"), "--print-config", "seed=4"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["run"]["seed"] == 4 and printed["model"]["backbone"] == "tiny_r2plus1d"
    assert main(["pretrain", "--config", str(CONFIGS / "demo_cpu.yaml"), "lernrate=1"]) == 2
    assert "unknown config key 'lernrate'; did you mean 'optim.lr'?" in capsys.readouterr().err


def test_order_head_and_init_keys_reach_the_model():
    cfg = load_config(CONFIGS / "demo_cpu.yaml", ["order_head=mlp", "init="])
    assert model_config(cfg).order_head == "mlp" and model_config(cfg).backbone_options == {}
    assert load_config(CONFIGS / "demo_cpu.yaml").model.order_head == "linear"  # the release's, everywhere
    with pytest.raises(ConfigError, match="model.order_head='deep' must be one of linear or mlp"):
        load_config(None, ["order_head=deep"])
    with pytest.raises(ConfigError, match="motion_broken_negatives=.* must be one of shuffle or repeat"):
        load_config(None, ["motion_broken_negatives=[reverse]"])
    with pytest.raises(ConfigError, match="keep one"):
        model_config(load_config(None, ["init=a.pth", "backbone_options={weights: b.pth}"]))


def test_values_are_typed_the_same_way_for_either_config():
    good = [(PretrainConfig, "lr", "2e-3", 0.002), (PretrainConfig, "epochs", "3.0", 3),
            (PretrainConfig, "resume", "true", True), (PretrainConfig, "data", "007", "007"),
            (FinetuneConfig, "short_side", "256", 256), (FinetuneConfig, "short_side", "native", "native"),
            (FinetuneConfig, "dropout", "0", 0.0), (FinetuneConfig, "backbone_options", "{depth: 18}",
                                                    {"depth": 18})]
    from mcl_video.training.schema import load, resolve_key

    for cls, key, value, expected in good:
        out = flatten(load(cls, None, ["backbone=r3d_18", f"{key}={value}"]))[resolve_key(cls, key, "x")]
        assert out == expected and type(out) is type(expected), (cls.__name__, key, value, out)
    bad = [(["split=two"], "command line: data.split='two' input should be a valid integer"),
           (["epochs=2.5"], "command line: optim.epochs=2.5 input should be a valid integer"),
           (["split={a: 1"], "command line: cannot read split='{a: 1'"),
           (["lrr=1"], "command line: unknown config key 'lrr'; did you mean 'optim.lr'?"),
           (["short_side=0"], "command line: sampling.short_side=0 "),
           ([], "config: set model.checkpoint=FILE")]
    for overrides, message in bad:
        with pytest.raises(ConfigError) as err:
            load_finetune_config(None, (["backbone=r3d_18"] if overrides else []) + overrides)
        assert str(err.value).startswith(message), str(err.value)
