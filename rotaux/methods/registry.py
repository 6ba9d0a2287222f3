"""The one list of methods: the CLI, ``rotaux``'s top-level names, the configs' tests, the
contract suite (DDP, bf16, resume, export) and the throughput benchmark all read it, so a method
registered once is covered by all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from rotaux.errors import RotauxError

MethodClass = TypeVar("MethodClass", bound=type)


@dataclass(frozen=True)
class MethodEntry:
    """A registered method.

    Args:
        name: its short name, also the file name of its configs (``configs/cifar10/<name>.yaml``).
        cls: the ``SSLMethod`` subclass.
        paper: the paper it implements, as the README's methods table cites it.
        backbones: ``any`` backbone family, or ``vit`` only (masked-image methods).
    """

    name: str
    cls: type
    paper: str
    backbones: Literal["any", "vit"] = "any"


METHODS: dict[str, MethodEntry] = {}
"""Registered methods by short name, in registration order."""


def register_method(
    name: str, paper: str, backbones: Literal["any", "vit"] = "any"
) -> Callable[[MethodClass], MethodClass]:
    """Class decorator that registers a method under ``name``:
    ``@register_method("byol", paper="Grill et al., ...")``."""

    def register(cls: MethodClass) -> MethodClass:
        if name in METHODS and METHODS[name].cls is not cls:
            raise RotauxError(f"Two methods are registered as {name!r}.")
        METHODS[name] = MethodEntry(name, cls, paper, backbones)
        return cls

    return register


def method_names() -> list[str]:
    """Class names of the registered methods (what ``--model`` accepts)."""
    return [entry.cls.__name__ for entry in METHODS.values()]
