"""The model registry: config-section builders of every family, and the official configs as named presets.

    from modeling import create_model, list_models
    list_models("maskbit_tokenizer_*")      # ['maskbit_tokenizer_10bit', 'maskbit_tokenizer_10bit__discriminator', ...]
    with torch.device("meta"):
        model = create_model("maskbit_generator_12bit")                          # layout only, no memory
    model = create_model("maskbit_tokenizer_12bit", pretrained="hf://markweber/maskbit_tokenizer_12bit")
    model = create_model("maskbit_generator_12bit", hidden_dim=64, depth=2)     # reduced width (tests)

Two things are registered, both by the family's own module, so that adding a family touches no central code:

- **builders**: `@register_builder("tokenizer", "vqgan+", "maskgit")` marks a function `(section) -> module` that
  turns one config section (`model.vq_model`, `model.mlm_model` or `model.discriminator`) into explicit
  constructor arguments; generator builders also get the `TokenSpace` of the config's tokenizer.
  `modeling.build_tokenizer(config)` etc. dispatch on the section's class key (`modeling.builders`).
- **presets**: `register_presets("generator", main="generator")` makes every `configs/generator/<name>.yaml` a preset
  `<name>` that builds the config's main model. A tokenizer preset whose YAML also sets `model.discriminator` has a
  second part `<name>__discriminator` (the suffix convention of the official layout manifests).
"""
from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from torch import nn

from utils.errors import MaskbitError

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class Kind:
    """What a builder makes: the config sections it may read, each with the key that names the class, in order of
    precedence. The first section whose class key is set (non-empty) is the one a config uses."""
    name: str
    sections: Tuple[Tuple[str, str], ...]

    def section_of(self, config) -> Tuple[str, str]:
        """(section, class key) used by `config` (a merged experiment config)."""
        for section, key in self.sections:
            if config.model[section][key]:
                return section, key
        return self.sections[-1]


KINDS: Dict[str, Kind] = {k.name: k for k in (
    Kind("tokenizer", (("vq_model", "model_class"),)),
    # TiTok's generators live in `model.generator` (official key names), MaskGIT-pytorch's in `model.maskgit`,
    # MaskBit's in `model.mlm_model`
    Kind("generator", (("maskgit", "version"), ("generator", "model_type"), ("mlm_model", "model_cls"))),
    Kind("discriminator", (("discriminator", "name"),)),
)}

_BUILDERS: Dict[str, Dict[str, Callable]] = {kind: {} for kind in KINDS}
_PRESET_FOLDERS: List[Tuple[str, str, str]] = []  # (folder under configs/, main kind, file pattern)
_SAMPLERS: Dict[str, type] = {}  # generator class name -> sampling recipe (register_sampler)
_INFILLS: Dict[type, Callable] = {}  # generator module class -> its sampler's infill step (register_infill)


class UnknownModelError(MaskbitError, ValueError):
    """A model class or preset name that nothing registered."""


def register_builder(kind: str, *class_names: str) -> Callable[[Callable], Callable]:
    """Decorator: `fn(section, context) -> nn.Module` builds `kind` for each of `class_names`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")

    def decorator(fn: Callable) -> Callable:
        for name in class_names:
            if name in _BUILDERS[kind] and _BUILDERS[kind][name] is not fn:
                raise ValueError(f"{kind} class '{name}' is registered twice")
            _BUILDERS[kind][name] = fn
        return fn

    return decorator


def builder(kind: str, config) -> Tuple[Callable, object]:
    """(the builder registered for the class named in `config`'s section of `kind`, that section), or an error that
    names the config key and the choices."""
    _import_families()
    section, key = KINDS[kind].section_of(config)
    class_name = config.model[section][key]
    found = _BUILDERS[kind].get(class_name)
    if found is None:
        raise UnknownModelError(f"Unknown model.{section}.{key} '{class_name}'; choose one of "
                                f"{sorted(_BUILDERS[kind])}.")
    return found, config.model[section]


def register_sampler(*class_names: str) -> Callable[[type], type]:
    """Class decorator for a generator family's sampling recipe, a class with two static methods:
    `settings(config, evaluation) -> dict` (what a run records) and
    `build(config, generator, tokenizer, evaluation) -> fn(labels (B,), seeds (B,)) -> images (B, 3, H, W)`.
    `evaluation=True` applies what the family's official evaluation script fixes (e.g. a softmax temperature)."""
    def decorator(recipe: type) -> type:
        for name in class_names:
            _SAMPLERS[name] = recipe
        return recipe
    return decorator


def sampler_recipe(config):
    """The sampling recipe registered for the config's generator class."""
    _import_families()
    section, key = KINDS["generator"].section_of(config)
    name = config.model[section][key]
    if name not in _SAMPLERS:
        raise UnknownModelError(f"No sampler for model.{section}.{key} '{name}'; samplers exist for "
                                f"{sorted(_SAMPLERS)}.")
    return _SAMPLERS[name]


def register_infill(*generator_classes: type) -> Callable[[Callable], Callable]:
    """Decorator for a generator family's infill step, the one thing `modeling.edit` needs from a sampler:
    `fn(model, tokens (B, N) int64, editable (B, N) bool, class_ids (B,), seeds, settings, *, noise, on_step,
    splits, **overrides) -> tokens (B, N)` that generates the editable tokens and never changes the others
    (contract: `modeling.editing`). Subclasses of a registered class use it too."""
    def decorator(fn: Callable) -> Callable:
        for cls in generator_classes:
            _INFILLS[cls] = fn
        return fn
    return decorator


def infill_step(generator: nn.Module) -> Optional[Callable]:
    """The infill step registered for `generator`'s class (or its nearest registered base class), else None."""
    _import_families()
    return next((_INFILLS[cls] for cls in type(generator).__mro__ if cls in _INFILLS), None)


def register_presets(folder: str, main: str, pattern: str = "*.yaml") -> None:
    """Every `configs/<folder>/<pattern>` is a preset whose main model is of kind `main`. A folder holding models
    of two kinds registers the narrower pattern first: a file keeps the kind of the first registration it matches."""
    if main not in KINDS:
        raise ValueError(f"main must be one of {sorted(KINDS)}, got {main!r}")
    if (folder, main, pattern) not in _PRESET_FOLDERS:
        _PRESET_FOLDERS.append((folder, main, pattern))


@dataclass(frozen=True)
class Preset:
    name: str  # e.g. maskbit_tokenizer_12bit__discriminator
    config_path: Path
    kind: str  # what create_model(name) builds


def presets() -> Dict[str, Preset]:
    """Every registered preset (main models and their second parts), by name."""
    _import_families()
    return dict(_preset_table(tuple(_PRESET_FOLDERS)))


@functools.lru_cache(maxsize=None)
def _preset_table(folders: Tuple[Tuple[str, str, str], ...]) -> Dict[str, Preset]:
    """The presets of `folders`, read once per process (the YAMLs are only looked at for their model sections)."""
    from omegaconf import OmegaConf

    found: Dict[str, Preset] = {}
    for folder, main, pattern in folders:
        for path in sorted((CONFIG_ROOT / folder).glob(pattern)):
            if path.stem in found:
                continue  # matched by an earlier registration of the folder
            found[path.stem] = Preset(path.stem, path, main)
            if main != "tokenizer":
                continue  # only a tokenizer config also describes second parts (discriminator, generator)
            sections = (OmegaConf.load(path).get("model") or {}).keys()
            for kind in KINDS.values():
                if kind.name != main and any(s in sections for s, _ in kind.sections):
                    name = f"{path.stem}__{kind.name}"
                    found[name] = Preset(name, path, kind.name)
    return found


def list_models(pattern: str = "*") -> List[str]:
    """Sorted preset names matching the shell-style `pattern`."""
    return sorted(name for name in presets() if fnmatch.fnmatchcase(name, pattern))


def preset_config(name: str, overrides: Optional[dict] = None):
    """The merged experiment config of preset `name` (the YAML on the schema), with `overrides` applied.

    Override keys without a dot go to the preset's model section (`hidden_dim=64` ->
    `model.mlm_model.hidden_dim`); dotted keys are full config paths (`dataset.preprocessing.resolution=128`).
    """
    from utils.config import load_yaml, with_defaults

    preset = _preset(name)
    yaml = load_yaml(preset.config_path)
    section = KINDS[preset.kind].section_of(with_defaults(yaml))[0]
    nested: dict = {}
    for key, value in (overrides or {}).items():
        path = key.split(".") if "." in key else ["model", section, key]
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return with_defaults(yaml, nested, origin=f"preset '{name}'")


def create_model(name: str, pretrained: Optional[str] = None, **overrides) -> nn.Module:
    """Build preset `name` (see `list_models()`); `pretrained`: anything `load_pretrained` takes (a file, a folder,
    a `checkpoint-<step>/` folder, `hf://owner/repo[/file]`), loaded strictly. Returns train mode without weights,
    eval mode with them, like timm."""
    from modeling.builders import BUILD
    from modeling.checkpoint import load_pretrained

    preset = _preset(name)
    model = BUILD[preset.kind](preset_config(name, overrides))
    return load_pretrained(model, pretrained) if pretrained else model


def _preset(name: str) -> Preset:
    found = presets()
    if name not in found:
        close = fnmatch.filter(found, f"*{name.split('__')[0][:12]}*")[:8]
        raise UnknownModelError(f"Unknown model '{name}'. list_models() names {len(found)} presets"
                                f"{'; close: ' + ', '.join(close) if close else ''}.")
    return found[name]


def _import_families() -> None:
    """The package imports every family module, which runs their registrations (as timm's model modules)."""
    import modeling  # noqa: F401  (pyflakes: used for its side effect)
