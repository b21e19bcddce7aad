"""Every registered model keeps the contract the registry states for it (brainae/registry.py).

One parametrised test per model, with no model named by hand: it builds the model, checks its output
shapes and its declared capabilities against what the network does, trains it for an epoch on tiny
data, and reads the run folder back with ``load_run``: the same network, the same output.
"""
import dataclasses

import pytest
import torch

from brainae.config import build_config
from brainae.errors import BrainaeError
from brainae.models import build_model, own_options
from brainae.registry import model_specs, resolve
from brainae.training.run import load_run, network_state, read_checkpoint
from brainae.training.train import train

SPECS = {s.name: s for s in model_specs()}
SMALL = ["model.channels=[8,16,32]", "model.latent_dim=16", "train.batch_size=8"]


def small_config(name: str, epochs: int = 1):
    cfg = build_config(name, preset="quick", data="phantom:60", image_size=32, epochs=epochs, accelerator="cpu",
                       overrides=SMALL)
    cfg.train.progress = False
    return cfg


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_network_does_what_its_registration_says(name):
    spec, cfg = SPECS[name], small_config(name)
    model = build_model(cfg.model, 32).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
    assert out.recon.shape == x.shape and out.z.shape[0] == 3
    assert 0 <= float(out.recon.min()) and float(out.recon.max()) <= 1
    terms = model.train().loss(model(x), x)
    assert {"loss", "mse"} <= set(terms) and torch.isfinite(terms["loss"])
    assert resolve(cfg.model).variational == callable(getattr(model, "encode_dist", None))
    with_skips = dataclasses.replace(cfg.model, skips=[0])
    if resolve(cfg.model).takes_skips:
        build_model(with_skips, 32)
    else:
        with pytest.raises(BrainaeError, match="model.skips"):
            build_model(with_skips, 32)
    for key in list(spec.search) + [f"model.{a}" for a in spec.arg_names if a not in own_options(spec)]:
        section, *_, field = key.split(".")  # model.NAME, or model.options.NAME for the model's own options
        assert section in ("model", "train") and (hasattr(cfg.model, field) or field in own_options(spec)
                                                  or field in ("depth", "base_width") or hasattr(cfg.train, field)), key


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_trained_model_round_trips_through_its_run_folder(tmp_path, name):
    metrics = train(small_config(name), tmp_path / name)
    assert metrics["epochs"] == 1 and not metrics["diverged"]
    model, cfg = load_run(tmp_path / name)  # reads weights/best.safetensors
    assert cfg.model.name == name and not model.training
    reference = build_model(cfg.model, cfg.data.image_size)
    reference.load_state_dict(network_state(read_checkpoint(tmp_path / name / "checkpoints" / "best.ckpt")["state_dict"]))
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x).recon, reference.eval()(x).recon)


def test_networks_know_nothing_of_the_config():
    """Model files hold plain networks, their argument dataclasses and builders: no brainae config, no
    brainae errors. ``build_model`` (models/__init__.py) is where the config meets them."""
    import ast
    from pathlib import Path

    import brainae.models

    for path in Path(brainae.models.__file__).parent.glob("*.py"):
        if path.name == "__init__.py":
            continue
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"brainae.config", "brainae.errors"}, path.name


def test_each_model_reads_exactly_its_arguments():
    """A model's arguments are the config keys it reads: a change to a key it does not take leaves the
    network as it was, and its own complaint about an argument names the config key."""
    from brainae.config import ModelConfig

    net = build_model(ModelConfig(name="ae", channels=[8, 16], latent_dim=8), 16)
    same = build_model(ModelConfig(name="ae", channels=[8, 16], latent_dim=8, blocks=3, beta=9.0), 16)
    assert [p.shape for p in net.parameters()] == [p.shape for p in same.parameters()]
    assert SPECS["unet"].arg_names.count("latent_dim") == 0 and SPECS["skipae"].takes_skips
    with pytest.raises(BrainaeError, match=r"^config key 'model.kernel_size' must be odd"):
        build_model(ModelConfig(name="vae", channels=[8, 16], latent_dim=8, kernel_size=2), 16)


def test_a_registration_must_search_and_wrap_its_own_arguments():
    from brainae.registry import register_model

    @dataclasses.dataclass
    class Args:
        latent_dim: int = 8

    with pytest.raises(ValueError, match="model.blocks"):
        register_model("badsearch", args=Args, search={"model.blocks": [1, 2]})(lambda args, size: None)
    with pytest.raises(ValueError, match="dataclass"):
        register_model("notdataclass", args=dict)(lambda args, size: None)
    assert "badsearch" not in SPECS and "notdataclass" not in [s.name for s in model_specs()]


@pytest.fixture
def gain_model(monkeypatch):
    """A model with an argument brainae's config has no key for (``gain``), as a plugin would register it."""
    from brainae import registry
    from brainae.models.ae import ConvAE, ConvArgs

    @dataclasses.dataclass
    class GainArgs(ConvArgs):
        gain: float = 1.0

    def build(args: GainArgs, image_size: int):
        if args.gain <= 0:
            raise ValueError(f"gain must be positive, got {args.gain}")
        net = ConvAE(image_size=image_size, **{k: v for k, v in dataclasses.asdict(args).items() if k != "gain"})
        net.gain = args.gain
        return net

    spec = registry.ModelSpec("gainae", build, GainArgs, search={"model.options.gain": [0.5, 2.0]}, source="a-plugin")
    monkeypatch.setitem(registry._MODELS, "gainae", spec)
    return spec


def test_a_models_own_argument_is_a_model_option(gain_model):
    """An argument with no key in the model section is set as model.options.NAME: typed by the model's
    args, merged key by key, refused by models that do not take it, searched like any key."""
    from brainae.models import clear_untaken_structure
    from brainae.sweeps.space import apply_params, load_space

    tiny = ["model.channels=[8,16]", "model.latent_dim=8"]
    cfg = build_config("gainae", image_size=16, overrides=tiny + ["model.options.gain=2", "model.options.other=1"])
    assert cfg.model.options == {"gain": 2, "other": 1}  # merged, not replaced
    with pytest.raises(BrainaeError, match=r"^config key 'model.options.other': gainae has no such argument"):
        build_model(cfg.model, 16)
    cfg.model.options.pop("other")
    net = build_model(cfg.model, 16)
    assert net.gain == 2.0 and isinstance(net.gain, float)
    with pytest.raises(BrainaeError, match=r"^config key 'model.options.gain' must be positive"):
        build_model(dataclasses.replace(cfg.model, options={"gain": -1}), 16)
    with pytest.raises(BrainaeError, match="model.options.gain"):
        build_model(dataclasses.replace(cfg.model, name="ae"), 16)  # ae has no gain
    ae = dataclasses.replace(cfg.model, name="ae", options={"gain": 2})
    clear_untaken_structure(ae)  # what a study does for the models among those compared that lack it
    assert ae.options == {}
    assert "model.options.gain" in load_space("wide", "gainae").keys()
    assert apply_params(cfg, {"model.options.gain": 0.5}).model.options["gain"] == 0.5


def test_a_run_saved_with_a_key_its_model_ignored_still_loads(tmp_path):
    """Runs of ae written before models refused keys they do not take (model.bottleneck: dense on an ae,
    as a study with --models ae,resae wrote it) load, resume and export as they did."""
    from brainae.config import load_config, save_config
    from brainae.training.run import load_run

    cfg = small_config("ae")
    train(cfg, tmp_path / "ae")
    saved = load_config(tmp_path / "ae" / "config.yaml")
    saved.model.bottleneck = "dense"
    save_config(saved, tmp_path / "ae" / "config.yaml")
    with pytest.raises(BrainaeError, match="model.bottleneck"):
        build_model(saved.model, 32)  # a new config with it is refused
    model, loaded = load_run(tmp_path / "ae")
    assert loaded.model.bottleneck == "auto" and model(torch.rand(1, 1, 32, 32)).recon.shape == (1, 1, 32, 32)


def test_a_fault_in_a_network_keeps_its_traceback(monkeypatch):
    """Only a ValueError about an argument becomes a config-key error; any other is the code's, raised as is."""
    from brainae import registry
    from brainae.config import ModelConfig
    from brainae.models.ae import ConvArgs

    def broken(args, image_size):
        a, b = [1, 2, 3]  # noqa: F841  (a bug: too many values to unpack)

    monkeypatch.setitem(registry._MODELS, "brokenae", registry.ModelSpec("brokenae", broken, ConvArgs))
    with pytest.raises(ValueError, match="too many values"):
        build_model(ModelConfig(name="brokenae"), 32)
