"""Which trainer trains a config: registered per model class, like the model builders (`modeling.registry`).

    trainer = trainer_class("tokenizer", config)(config)      # scripts/train_tokenizer.py
    trainer = trainer_class("generator", config)(config)      # scripts/train_maskbit.py

A family registers its trainers in its own module: `@register_trainer("tokenizer", "titok")` on a `Trainer`
subclass. The class named by the config's section of that kind (`modeling.registry.KINDS`) selects it.
"""
from __future__ import annotations

from typing import Callable, Dict

from modeling.registry import KINDS
from utils.config import as_config
from utils.errors import MaskbitError

_TRAINERS: Dict[str, Dict[str, type]] = {kind: {} for kind in KINDS}


def register_trainer(kind: str, *class_names: str) -> Callable[[type], type]:
    """Class decorator: this `Trainer` subclass trains the `kind` models of `class_names`."""
    def decorator(cls: type) -> type:
        for name in class_names:
            if name in _TRAINERS[kind] and _TRAINERS[kind][name] is not cls:
                raise ValueError(f"{kind} class '{name}' has two trainers")
            _TRAINERS[kind][name] = cls
        return cls
    return decorator


def trainer_class(kind: str, config) -> type:
    """The trainer registered for the model class `config` names for `kind`, or an error naming what exists."""
    import training  # noqa: F401  (imports every trainer module, which registers them)

    config = as_config(config)
    section, key = KINDS[kind].section_of(config)
    name = config.model[section][key]
    if name not in _TRAINERS[kind]:
        raise MaskbitError(f"No trainer for model.{section}.{key} '{name}'; trainers exist for "
                           f"{sorted(_TRAINERS[kind])}.")
    return _TRAINERS[kind][name]
