"""Files shipped with AV Studio: the trained models (``models/``) and the app's resources
(``resources/``: icons, style sheet, the demo clip).

In a source checkout they are the repository's top-level ``models/`` and ``resources/``
folders; a wheel carries the same folders inside the package (``avstudio/models``,
``avstudio/resources``, see ``[tool.hatch.build.targets.wheel.force-include]`` in
pyproject.toml), found here with :mod:`importlib.resources`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def shipped(folder: str) -> Path:
    """The shipped folder ``folder`` (``"models"`` or ``"resources"``): inside the installed
    package when it is there, else the source checkout's top-level folder (which may not exist:
    callers say what is missing)."""
    inside = resources.files(__package__).joinpath(folder)
    if isinstance(inside, Path) and inside.is_dir():
        return inside
    return _CHECKOUT / folder


def resource(*parts: str) -> Path:
    """A file under ``resources/`` (e.g. ``resource("icons", "play.svg")``)."""
    return shipped("resources").joinpath(*parts)


def default_model_dir() -> Path:
    """``models/default``: the shipped model (it may be absent)."""
    return shipped("models") / "default"


def demo_clip() -> Path:
    """The bundled demo clip (``resources/demo.mp4``)."""
    return resource("demo.mp4")
