"""The model registry: every shipped config is a preset, and every preset builds the official layout.

Parametrised over `list_models()` (as timm's tests are over its registry): each preset is built on the meta device
(no memory, no compute) and compared with the layout manifest of the same name in tests/fixtures/checkpoint_layout
(keys, shapes, dtypes and order; parameter counts overall and per submodule; buffer sizes).
"""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from modeling import (build_generator, build_tokenizer, create_model, list_models, load_pretrained, register_builder,
                      token_space)
from modeling.registry import UnknownModelError, preset_config

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MANIFESTS = {p.stem: p for folder in ("checkpoint_layout", "checkpoint_layout_titok",
                                      "checkpoint_layout_maskgit_pytorch")
             for p in (FIXTURES / folder).glob("*.json")}
# presets that are training configs of a part that has its own manifest elsewhere (they build the B-64 tokenizer)
WITHOUT_MANIFEST = {"titok_stage2", "titok_maskgit"}


def layout(name):
    return json.loads(MANIFESTS[name].read_text())


def entries(module):
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()]


def test_every_config_is_a_preset_and_every_manifest_has_one():
    configs = {p.stem for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name != "quickstart"}
    names = set(list_models())
    assert configs <= names
    assert {n.split("__")[0] for n in names} == configs  # second parts only of shipped configs
    assert names == set(MANIFESTS) | WITHOUT_MANIFEST
    assert list_models("maskbit_generator_14bit*") == [
        "maskbit_generator_14bit", "maskbit_generator_14bit_128steps", "maskbit_generator_14bit_256steps"]


@pytest.mark.parametrize("name", sorted(set(list_models()) - WITHOUT_MANIFEST))
def test_preset_builds_the_official_layout_on_meta(name):
    expected = layout(name)
    with torch.device("meta"):
        model = create_model(name)
    assert entries(model) == expected["keys"]  # names, shapes, dtypes and order: strict loading of released weights
    assert sum(p.numel() for p in model.parameters()) == expected["params"]
    named = dict(model.named_parameters())  # a tied parameter counts once, under its first name (v2 tok_emb / head)
    for submodule, count in expected.get("params_by_submodule", {}).items():
        # a submodule, or a parameter of the top module (pos_emb, latent_tokens)
        got = sum(p.numel() for n, p in named.items() if n == submodule or n.startswith(submodule + "."))
        assert got == count, submodule
    if "buffer_elements" in expected:
        assert sum(b.numel() for b in model.buffers()) == expected["buffer_elements"]
    for key in ("mask_token", "seq_len"):
        if key in expected:
            assert getattr(model, key) == expected[key]


def test_headline_parameter_counts():
    with torch.device("meta"):
        counts = {name: sum(p.numel() for p in create_model(name).parameters())
                  for name in ("maskbit_tokenizer_12bit", "maskbit_generator_12bit", "maskbit_generator_14bit",
                               "maskbit_tokenizer_12bit__discriminator")}
    assert counts == {"maskbit_tokenizer_12bit": 54_479_247, "maskbit_generator_12bit": 304_795_776,
                      "maskbit_generator_14bit": 304_929_024, "maskbit_tokenizer_12bit__discriminator": 7_431_297}


def test_token_space_is_read_from_the_tokenizer():
    space = token_space(preset_config("maskbit_generator_14bit"))
    assert (space.codebook_size, space.token_bits, space.grid, space.seq_len) == (16384, 14, (16, 16), 256)
    taming = token_space(preset_config("taming_vqgan_tokenizer"))
    assert (taming.codebook_size, taming.token_bits, taming.grid) == (1024, 10, (16, 16))
    half = token_space(preset_config("maskbit_generator_12bit", {"dataset.preprocessing.resolution": 128}))
    assert half.grid == (8, 8)
    state = torch.get_rng_state()
    token_space(preset_config("maskbit_generator_12bit"))
    assert torch.equal(state, torch.get_rng_state())  # seeded construction order of the trainers is untouched


def test_overrides_pretrained_and_train_eval_mode(tmp_path):
    small = dict(hidden_dim=32, depth=1, heads=2, mlp_dim=64)
    torch.manual_seed(0)
    model = create_model("maskbit_generator_10bit", **small, **{"dataset.preprocessing.resolution": 64})
    assert (model.seq_len, model.bits, model.transformer.layers[0][0].mha.heads) == (16, 10, 2)
    assert model.training  # without weights, like timm
    torch.save(model.state_dict(), tmp_path / "gen.bin")
    loaded = create_model("maskbit_generator_10bit", pretrained=str(tmp_path / "gen.bin"), **small,
                          **{"dataset.preprocessing.resolution": 64})
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    # the released checkpoints call the bit projection `token_emb`: renamed by the model's own table
    released = {k.replace("input_proj", "token_emb"): v for k, v in model.state_dict().items()}
    torch.save(released, tmp_path / "released.bin")
    again = load_pretrained(create_model("maskbit_generator_10bit", **small, **{"dataset.preprocessing.resolution": 64}),
                            tmp_path / "released.bin")
    assert torch.equal(again.input_proj.weight, model.input_proj.weight)


def test_every_generator_preset_has_a_sampler():
    """Every generator class a preset builds has a sampling recipe under the same name (modeling.build_sampler)."""
    from modeling.registry import presets, sampler_recipe
    for name, preset in presets().items():
        if preset.kind == "generator":
            sampler_recipe(preset_config(name))  # raises UnknownModelError when none is registered


def test_unknown_names_and_classes_say_what_exists():
    with pytest.raises(UnknownModelError, match="Unknown model 'maskbit_tokenizer_13bit'.*close: maskbit_tokenizer"):
        create_model("maskbit_tokenizer_13bit")
    with pytest.raises(ValueError, match=r"Unknown model.mlm_model.model_cls 'gpt'; choose one of \[.*'bert', 'lfq_bert'"):
        build_generator({"model": {"mlm_model": {"model_cls": "gpt"}}})
    with pytest.raises(ValueError, match="Unknown config key 'model.mlm_model.hiden_dim'"):
        create_model("maskbit_generator_12bit", hiden_dim=3)


def test_a_new_family_registers_without_touching_central_code():
    class ToyTokenizer(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.proj = nn.Conv2d(3, width, 1)

    @register_builder("tokenizer", "toy-test-family")
    def _toy(vq, image_size):
        return ToyTokenizer(vq.token_size)

    model = build_tokenizer({"model": {"vq_model": {"model_class": "toy-test-family", "token_size": 5}}})
    assert isinstance(model, ToyTokenizer) and model.proj.out_channels == 5
    with pytest.raises(ValueError, match="registered twice"):
        register_builder("tokenizer", "vqgan+")(_toy)
