"""Self-supervised methods, each a LightningModule with the rotation auxiliary mixed in.

Every method module registers its class with :func:`~rotaux.methods.registry.register_method`;
its line in the import below is what adds a method to the CLI, to ``rotaux.<ClassName>``, to the
tests and to the benchmarks. The classes are reachable as ``rotaux.methods.<ClassName>``.
"""

from rotaux.methods import (  # noqa: F401 - each import registers its method
    all4one,
    barlow_twins,
    byol,
    deepclusterv2,
    dino,
    ibot,
    mae,
    mocov2plus,
    mocov3,
    nnbyol,
    nnclr,
    nnsiam,
    ressl,
    simclr,
    simsiam,
    supcon,
    swav,
    vibcreg,
    vicreg,
    wmse,
)
from rotaux.methods.base import SSLMethod
from rotaux.methods.momentum import MomentumMethod
from rotaux.methods.registry import METHODS, MethodEntry, method_names, register_method
from rotaux.methods.rotation import RotationAuxMixin


def method_class(name: str) -> type[SSLMethod]:
    """The registered method whose class name or short name is ``name``."""
    for entry in METHODS.values():
        if name in (entry.cls.__name__, entry.name):
            return entry.cls
    raise KeyError(name)


def __getattr__(name: str) -> type[SSLMethod]:
    try:
        return method_class(name)
    except KeyError:
        raise AttributeError(f"module 'rotaux.methods' has no attribute {name!r}") from None


__all__ = [
    "METHODS",
    "MethodEntry",
    "MomentumMethod",
    "RotationAuxMixin",
    "SSLMethod",
    "method_class",
    "method_names",
    "register_method",
    *method_names(),
]
