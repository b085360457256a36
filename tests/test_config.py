"""PretrainConfig: shipped YAMLs, typed key=value overrides, unknown keys with a suggestion."""

from pathlib import Path

import pytest
import torch
import yaml

import mcl_video
from mcl_video.training import ConfigError, PretrainConfig, load_config
from mcl_video.training.builders import build_model, build_optimizer, feature_grid, model_config
from mcl_video.training.config import config_from_dict, config_to_dict, parse_overrides, save_run_config

CONFIGS = Path(mcl_video.__file__).parent / "configs"
SHIPPED = ["ucf101_p3d50.yaml", "k400_p3d50.yaml", "ucf101_r2plus1d18_112.yaml", "demo_cpu.yaml"]


def test_release_settings_in_shipped_configs():
    ucf = load_config(CONFIGS / "ucf101_p3d50.yaml")
    k400 = load_config(CONFIGS / "k400_p3d50.yaml")
    for c in (ucf, k400):
        assert (c.backbone, c.size, c.batch_size, c.queue_size) == ("p3d_resnet50", 224, 8, 131072)
        assert (c.temperature, c.ema, c.warmup_epochs, c.schedule) == (0.1, 0.999, 5.0, "cosine")
        assert (c.optimizer, c.momentum, c.weight_decay) == ("sgd", 0.9, 1e-4)
        # the release does not mask the query's own video, floors the cosine at 1e-6, uses a linear order head
        assert (c.mask_same_video, c.min_lr, c.order_head, c.init) == (False, 1e-6, "linear", "")
    assert (ucf.epochs, ucf.lr, ucf.use_order, ucf.dataset) == (200, 0.01, True, "ucf101")
    assert (k400.epochs, k400.lr, k400.use_order, k400.dataset) == (400, 0.02, False, "kinetics400")
    r21 = load_config(CONFIGS / "ucf101_r2plus1d18_112.yaml")
    assert (r21.backbone, r21.size, r21.clip_len) == ("r2plus1d_18", 112, 16)
    demo = load_config(CONFIGS / "demo_cpu.yaml")
    assert (demo.backbone, demo.optimizer, demo.lr, demo.schedule) == ("tiny_r2plus1d", "adamw", 1e-3,
                                                                         "constant")
    pretraining = [p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("finetune_")]
    assert sorted(pretraining) == sorted(SHIPPED)  # finetune_*.yaml: tests/test_finetune_engine.py


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_builds_its_model(name):
    cfg = load_config(CONFIGS / name)
    small = cfg.backbone == "tiny_r2plus1d"
    with torch.device("cpu" if small else "meta"):  # large ones: built (structure only), not run
        model = build_model(cfg)
    assert model.queue.shape == (cfg.feat_dim, cfg.queue_size)
    assert model_config(cfg).momentum == cfg.ema
    optimizer = build_optimizer(cfg, model)
    assert type(optimizer).__name__.lower() == cfg.optimizer
    grid = feature_grid(cfg)
    expected = {"p3d_resnet50": (4, 7, 7), "r2plus1d_18": (2, 7, 7)}.get(cfg.backbone)
    if expected:  # METHOD §7: 16 x 224 -> 4 x 7 x 7 for the release model
        assert grid == expected
    if small:  # small enough to run one training forward/backward
        cfg.size = 32  # keep the test quick on a shared 2-core machine
        grid = feature_grid(cfg)
        b, t, s = 2, cfg.clip_len, cfg.size
        batch = {k: torch.randn(b, 3, t, s, s) for k in ("q", "k0", "k1", "k2")}
        batch.update(target=torch.rand(b, *grid), order=torch.tensor([0, 1]), index=torch.tensor([0, 1]))
        loss, out = model(batch, order_weight=0.5, mal_weight=2.0)
        loss.backward()
        assert torch.isfinite(loss) and out["loss_mal"] > 0


def test_overrides_are_typed_by_field():
    cfg = load_config(CONFIGS / "demo_cpu.yaml",
                      ["data=/x/ann", "cache=c", "out=o", "seed=7", "max_steps=12", "epochs=3", "resume=true",
                       "lr=2e-3", "use_mal=false", "backbone_options={widths: [8, 16]}", "warmup_epochs=1"])
    got = (cfg.data, cfg.cache, cfg.out, cfg.seed, cfg.max_steps, cfg.epochs)
    assert got == ("/x/ann", "c", "o", 7, 12, 3)
    assert cfg.resume is True and cfg.use_mal is False and cfg.lr == 2e-3
    assert cfg.backbone_options == {"widths": [8, 16]} and cfg.warmup_epochs == 1.0
    assert parse_overrides(["motion_broken_negatives=[shuffle]"]) == {"motion_broken_negatives": ["shuffle"]}
    # the former on/off switch still reads
    assert parse_overrides(["motion_broken_negatives=yes"]) == {"motion_broken_negatives": True}
    broken = [load_config(None, [f"motion_broken_negatives={v}"]).motion_broken_negatives for v in (1, 0)]
    assert broken == [["shuffle", "repeat"], []]
    assert parse_overrides(["--data=007"]) == {"data": "007"}  # strings stay strings


def test_unknown_key_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rat'; did you mean 'lr'"):
        load_config(None, ["learning_rat=0.1"])
    with pytest.raises(ConfigError, match=r"command line: unknown config key 'wramup_epochs'; did you mean "
                                          r"'warmup_epochs'\?"):
        load_config(None, ["wramup_epochs=2"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_sise: 4\n")
    expected = r"bad.yaml: unknown config key 'batch_sise'; did you mean 'batch_size'"
    with pytest.raises(ConfigError, match=expected):
        load_config(bad)


def test_bad_values_are_errors():
    for override, msg in [("seed=abc", "not a valid int"), ("lr=fast", "not a valid float"),
                          ("resume=maybe", "not a valid bool"), ("optimizer=adam", "not one of sgd, adamw"),
                          ("batch_size=0", "must be >= 1"), ("seed", "must look like key=value")]:
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [override])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")


def test_round_trip_and_run_folder(tmp_path):
    cfg = load_config(CONFIGS / "ucf101_p3d50.yaml", ["data=a"])
    values = config_to_dict(cfg)
    assert config_from_dict(values) == cfg
    env = save_run_config(cfg, tmp_path)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == values
    assert set(env) >= {"git_commit", "python", "packages"} and env["packages"]["torch"]
    assert PretrainConfig() == config_from_dict(config_to_dict(PretrainConfig()))


def test_cli_prints_resolved_config_and_rejects_unknown_keys(capsys):
    from mcl_video.cli import main

    assert main(["pretrain", "--config", str(CONFIGS / "demo_cpu.yaml"), "--print-config", "seed=4"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 4 and printed["backbone"] == "tiny_r2plus1d"
    assert main(["pretrain", "--config", str(CONFIGS / "demo_cpu.yaml"), "lernrate=1"]) == 2
    assert "unknown config key 'lernrate'; did you mean 'lr'?" in capsys.readouterr().err


def test_order_head_and_init_keys_reach_the_model():
    cfg = load_config(CONFIGS / "demo_cpu.yaml", ["order_head=mlp", "init="])
    assert model_config(cfg).order_head == "mlp" and model_config(cfg).backbone_options == {}
    assert load_config(CONFIGS / "demo_cpu.yaml").order_head == "linear"  # the release's, everywhere
    with pytest.raises(ConfigError, match="order_head='deep' is not one of linear, mlp"):
        load_config(None, ["order_head=deep"])
    with pytest.raises(ConfigError, match="motion_broken_negatives='reverse' is not one of shuffle, repeat"):
        load_config(None, ["motion_broken_negatives=[reverse]"])
    with pytest.raises(ConfigError, match="keep one"):
        model_config(load_config(None, ["init=a.pth", "backbone_options={weights: b.pth}"]))


def test_coerce_value_types_values_for_either_config():
    from mcl_video.evaluation.finetune_config import FinetuneRunConfig as Finetune
    from mcl_video.training.config import ALIASES, coerce_value

    good = [(PretrainConfig, "lr", "2e-3", 0.002), (PretrainConfig, "epochs", 3.0, 3),
            (PretrainConfig, "resume", "true", True), (PretrainConfig, "data", "007", "007"),
            (Finetune, "short_side", "256", 256), (Finetune, "short_side", "native", "native"),
            (Finetune, "dropout", 1, 1.0), (Finetune, "backbone_options", "{depth: 18}", {"depth": 18})]
    for cls, key, value, expected in good:
        out = coerce_value(cls, key, value)
        assert out == expected and type(out) is type(expected), (cls.__name__, key, value, out)
    bad = [(Finetune, "split", "two", "command line: split='two' is not a valid int"),
           (Finetune, "epochs", 2.5, "command line: epochs=2.5 is not a valid int"),
           (Finetune, "split", "{a: 1", "command line: cannot parse split='{a: 1'"),
           (Finetune, "lrr", "1", "command line: unknown config key 'lrr'; did you mean 'lr'?"),
           (Finetune, "zzz", "1", "command line: unknown config key 'zzz'; known keys: dataset, data, "),
           (PretrainConfig, "resume", "maybe", "command line: resume='maybe' is not a valid bool")]
    for cls, key, value, message in bad:
        with pytest.raises(ConfigError) as err:
            coerce_value(cls, key, value, "command line")
        assert str(err.value).startswith(message), str(err.value)
    expected = r"^x.yaml: unknown config key 'learning_rate'; did you mean 'lr'\?$"  # an alias
    with pytest.raises(ConfigError, match=expected):
        coerce_value(PretrainConfig, "learning_rate", 0.1, "x.yaml", ALIASES)
