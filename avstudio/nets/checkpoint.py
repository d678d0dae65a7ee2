"""Model files: safetensors weights + a JSON card beside them. Nothing is ever unpickled.

A MODEL (a contract, docs/method.md) is a path to a ``.safetensors`` file with its ``.json``
card beside it, or a folder holding one or more such pairs (e.g. ``localizer`` and
``separator``). Each file holds one or more *components* under key prefixes
(``av.``, ``counter.``, ``sep.``); the card says which, with their configs::

    {"format": "avstudio-model", "format_version": 1,
     "components": {"av": {"class": "AVModel", "config": {...}}, ...},
     "stages": [...], "data": {...}, "metrics": {...}, "command": "...", ...}

Loading checks the file's bytes before handing them to safetensors (a pickle or a zip
renamed to .safetensors is named as such), checks the card, builds the modules from their
configs and loads the tensors strictly (wrong shapes or missing keys are refused with the
offending key named).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..assets import default_model_dir
from ..errors import CheckpointError
from .avin import AVINConfig, AVINModel
from .config import AVConfig, CounterConfig
from .counter import Counter
from .files import (
    FORMAT,
    FORMAT_VERSION,
    card_path,
    component_tensors,
    load_state,
    load_tensors,
    model_files,
    save_tensors,
)
from .model import AVModel
from .separator import Separator, SeparatorConfig


@dataclass
class ModelBundle:
    """Everything a MODEL path provides. Components that the files lack are None."""

    av: Optional[AVModel] = None  # the clustering-alignment localizer
    counter: Optional[Counter] = None
    separator: Optional[Separator] = None  # the separation network
    avin: Optional[AVINModel] = None  # the Induction Network: one heatmap per frame, no clusters
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # component -> card
    paths: dict[str, str] = field(default_factory=dict)  # component -> file
    name: str = ""

    def card(self, component: str = "av") -> dict[str, Any]:
        return self.cards.get(component, {})

    @property
    def kind(self) -> str:
        """Which localizer the model holds: "hsa" (the clustering-alignment model), "avin"
        (the Induction Network) or "" (none, e.g. a separator alone)."""
        if self.av is not None:
            return "hsa"
        if self.avin is not None:
            return "avin"
        return ""

    @property
    def localizer(self) -> Optional[torch.nn.Module]:
        """The localizing network, whichever kind it is (None if the files hold none)."""
        return self.av if self.av is not None else self.avin

    def to(self, device: str | torch.device) -> ModelBundle:
        for m in (self.av, self.counter, self.separator, self.avin):
            if m is not None:
                m.to(device)
        return self

    def eval(self) -> ModelBundle:
        for m in (self.av, self.counter, self.separator, self.avin):
            if m is not None:
                m.eval()
        return self

    @property
    def model_id(self) -> str:
        """A short identity for caching: name + sizes + mtimes of the files."""
        import hashlib

        h = hashlib.sha1()
        for comp in sorted(self.paths):
            p = Path(self.paths[comp])
            st = p.stat()
            h.update(f"{comp}:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]


#: how each component of a card is built: builder(its config, every component of the card)
_BUILDERS: dict[str, Callable[[dict, dict], torch.nn.Module]] = {
    "av": lambda cfg, comps: AVModel(AVConfig.from_dict(cfg)),
    "avin": lambda cfg, comps: AVINModel(AVINConfig.from_dict(cfg)),
    "counter": lambda cfg, comps: Counter(CounterConfig.from_dict(cfg),
                                          AVConfig.from_dict(comps.get("av", {}).get("config", {}))),
    "sep": lambda cfg, comps: Separator(SeparatorConfig.from_dict(cfg)),
}
#: the bundle field each component goes to
_FIELDS = {"av": "av", "counter": "counter", "sep": "separator", "avin": "avin"}


def load_model(path: str | os.PathLike | None = None, device: str = "cpu") -> ModelBundle:
    """Load a MODEL (file or folder; None = the shipped default) into a :class:`ModelBundle`."""
    if path is None:
        path = default_model_path()
    bundle = ModelBundle(name=model_name(path))
    for f in model_files(path):
        tensors, card = load_tensors(f)
        comps = card.get("components")
        if not isinstance(comps, dict) or not comps:
            raise CheckpointError(f"{card_path(f)}: the card lists no components")
        for name, spec in comps.items():
            if name not in _BUILDERS:
                raise CheckpointError(f"{card_path(f)}: unknown component {name!r}")
            cfg = spec.get("config", {}) if isinstance(spec, dict) else {}
            try:
                module = _BUILDERS[name](cfg, comps)
            except (TypeError, ValueError, KeyError) as exc:
                raise CheckpointError(f"{card_path(f)}: bad config for {name!r} ({exc})") from None
            load_state(module, tensors, name + ".", str(f))
            module.eval()
            setattr(bundle, _FIELDS[name], module)
            bundle.cards[name] = card
            bundle.paths[name] = str(f)
    return bundle.to(device)


#: file names that do not name a model by themselves (a run folder's, a model folder's parts)
GENERIC_STEMS = {"model", "checkpoint", "localizer", "separator", "counter", "weights"}


def model_name(path: str | os.PathLike) -> str:
    """How a MODEL is named on screen and in outputs: a folder by its name (``default``), a
    file by its stem, with its folder when the stem alone says nothing: a fine-tune's
    ``run-3/model.safetensors`` is ``run-3/model``, its ``stages/C1.safetensors`` ``run-3/C1``."""
    p = Path(path)
    if not p.is_file():
        return p.name
    parent = p.parent.name
    if p.parent.name == "stages" and p.parent.parent.name:
        return f"{p.parent.parent.name}/{p.stem}"
    if p.stem in GENERIC_STEMS and parent:
        return f"{parent}/{p.stem}"
    return p.stem


def default_model_path() -> Path:
    """The shipped default model (``models/default``, see :mod:`avstudio.assets`), or $AVSTUDIO_MODEL."""
    env = os.environ.get("AVSTUDIO_MODEL")
    if env:
        return Path(env)
    here = default_model_dir()
    if here.exists():
        return here
    raise CheckpointError("no model given and the default model (models/default) is not installed")


__all__ = ["FORMAT", "FORMAT_VERSION", "ModelBundle", "card_path", "component_tensors", "default_model_path",
           "model_name",
           "load_model", "load_state", "load_tensors", "model_files", "save_tensors"]
