"""Subtraction engines behind one interface: ``engine(inputs) -> SubtractionProducts``.

* ``zogy``     our ZOGY (:mod:`pipeline.subtraction.zogy`), always available;
* ``sfft``     the PyPI ``sfft`` package (Hu et al. 2022) when it is installed;
* ``hotpants`` the HOTPANTS program when a ``hotpants`` binary is on PATH.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable

from pipeline.subtraction.base import SubtractionInputs, SubtractionProducts
from pipeline.subtraction.zogy import zogy_subtract

ENGINES = ("zogy", "sfft", "hotpants")


class EngineUnavailable(ValueError):
    """The chosen engine is not installed here."""


def sfft_available() -> bool:
    return importlib.util.find_spec("sfft") is not None


def hotpants_path() -> str | None:
    return shutil.which("hotpants")


def get_engine(name: str, **options) -> Callable[[SubtractionInputs], SubtractionProducts]:
    """The engine function for ``name`` (options bound), or EngineUnavailable."""
    if name == "zogy":
        return zogy_subtract
    if name == "hotpants":
        binary = hotpants_path()
        if binary is None:
            raise EngineUnavailable(
                "the HOTPANTS engine needs the `hotpants` program on PATH; it is not installed "
                "here: choose the zogy engine"
            )
        # the adapter module is not written yet: say so instead of failing on an import
        raise EngineUnavailable(
            f"`hotpants` was found at {binary}, but this version has no HOTPANTS adapter yet: "
            "choose the zogy engine"
        )
    if name == "sfft":
        if not sfft_available():
            raise EngineUnavailable(
                "the SFFT engine needs the Python package `sfft` (pip install sfft); it is not "
                "installed here: choose the zogy engine"
            )
        raise EngineUnavailable(
            "the sfft package is installed, but this version has no SFFT adapter yet: "
            "choose the zogy engine"
        )
    raise EngineUnavailable(f"unknown subtraction engine {name!r}; choose one of {ENGINES}")
