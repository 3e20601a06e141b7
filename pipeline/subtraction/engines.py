"""Subtraction engines behind one interface: ``engine(inputs) -> SubtractionProducts``.

* ``zogy``     our ZOGY (:mod:`pipeline.subtraction.zogy`), always available;
* ``sfft``     SFFT through the PyPI ``sfft`` package (:mod:`pipeline.subtraction.sfft_engine`);
* ``hotpants`` the HOTPANTS program when a ``hotpants`` binary is on PATH
  (:mod:`pipeline.subtraction.hotpants`).

Each engine's parameters are a pydantic model (:class:`SfftConfig`, :class:`HotpantsConfig`);
:func:`get_engine` takes them as keyword options. The adapters are imported only when
chosen: ``sfft`` pulls in numba and pyFFTW.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import shutil
from collections.abc import Callable

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pipeline.subtraction.base import SubtractionInputs, SubtractionProducts
from pipeline.subtraction.zogy import zogy_subtract

ENGINES = ("zogy", "sfft", "hotpants")


class EngineUnavailable(ValueError):
    """The chosen engine cannot give a difference: not installed here, or bad options."""


class EngineFailed(EngineUnavailable):
    """The engine ran on this pair and failed (its message says why)."""


def sfft_available() -> bool:
    return importlib.util.find_spec("sfft") is not None


def hotpants_path() -> str | None:
    return shutil.which("hotpants")


def engine_field(model: type[BaseModel], name: str, label: str) -> FieldInfo:
    """A copy of an engine parameter's field (default, bounds, help) for a step config.

    The step config holds the parameters flat, as ``<engine>_<name>``, so that the web form
    generated from it shows each one; the engine's own model stays their one definition.
    """
    field = copy.deepcopy(model.model_fields[name])
    field.description = f"{label}: {field.description}"
    return field


def _config(model, name: str, options: dict):
    try:
        return model(**options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors()
        )
        raise EngineUnavailable(f"invalid {name} options: {problems}") from exc


def get_engine(name: str, **options) -> Callable[[SubtractionInputs], SubtractionProducts]:
    """The engine function for ``name`` with ``options`` bound, or EngineUnavailable."""
    if name == "zogy":
        if options:
            raise EngineUnavailable(f"the zogy engine takes no options, got {sorted(options)}")
        return zogy_subtract
    if name == "hotpants":
        binary = hotpants_path()
        if binary is None:
            raise EngineUnavailable(
                "the HOTPANTS engine needs the `hotpants` program on PATH; it is not installed "
                "here: choose the zogy or sfft engine"
            )
        from pipeline.subtraction.hotpants import HotpantsConfig, hotpants_subtract

        config = _config(HotpantsConfig, "hotpants", options)
        return functools.partial(hotpants_subtract, config=config, binary=binary)
    if name == "sfft":
        if not sfft_available():
            raise EngineUnavailable(
                "the SFFT engine needs the Python package `sfft` (pip install sfft); it is not "
                "installed here: choose the zogy engine"
            )
        from pipeline.subtraction.sfft_engine import SfftConfig, sfft_subtract

        config = _config(SfftConfig, "sfft", options)
        return functools.partial(sfft_subtract, config=config)
    raise EngineUnavailable(f"unknown subtraction engine {name!r}; choose one of {ENGINES}")
