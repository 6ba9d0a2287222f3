"""One-line answers to the command-line mistakes that jsonargparse reports as nested dumps: a
value of the wrong type, an unknown method, data source or backbone, a misspelt option, and an
option of rotaux 0.1 that moved."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from typing import Any

RENAMED_OPTIONS = {
    "data.root": "data.dataset.root",
    "data.download": "data.dataset.download",
    "data.val_fraction": "data.dataset.val_fraction",
    "data.split_seed": "data.dataset.split_seed",
    "data.verify_images": "data.dataset.verify_images",
    "data.on_corrupt_image": "data.dataset.on_corrupt_image",
    "data.synthetic_size": "data.dataset.size",
    "data.synthetic_classes": "data.dataset.classes",
    "data.rotation_source": "model.rotation_source",
    "data.rotation_copies": "model.rotation_copies",
    "data.rotation_crop_size": "model.rotation_crop_size",
    "data.rotation_crop_scale": "model.rotation_crop_scale",
    "model.backbone_width": "model.backbone.width",
    "model.cifar_stem": "model.backbone.cifar_stem",
}
"""Options of rotaux 0.1 and where they live now (the data source and the backbone own their
options; the rotation options are the model's)."""

REMOVED_OPTIONS = {
    "data.with_rotation": "the data module now always follows the model: --model.rotation_weight "
    "0 turns the rotation input off",
}

_UNKNOWN_MODEL_OPTION = re.compile(r"class_path '([\w.]+)':\s+Option '([\w.]+)' is not accepted")
"""jsonargparse's report of an option that the model class given by class path does not take."""

_TYPE_NAMES = {"float": "a number", "int": "an integer", "bool": "true or false", "str": "text"}


def _kinds() -> dict[str, tuple[str, list[str], str]]:
    """For each option that takes a class: what it is, the names it accepts, and how to give a
    class of one's own."""
    from rotaux.backbones import BACKBONES
    from rotaux.data.sources import DATA_SOURCES
    from rotaux.methods import method_names

    sources = [source.__name__ for source in DATA_SOURCES]
    own_source = "or the class path of a rotaux.data.DataSource subclass of your own"
    return {
        "model": (
            "method",
            sorted(method_names(), key=str.lower),
            "or the class path of a rotaux.SSLMethod subclass of your own "
            "(--model your_module.YourMethod)",
        ),
        "data.dataset": ("data source", sources, own_source),
        "data.eval_dataset": ("data source", sources, own_source),
        "backbone": (
            "backbone",
            [backbone.__name__ for backbone in BACKBONES],
            "or the class path of a rotaux.Backbone subclass of your own",
        ),
    }


def explain(message: str, parser: Any) -> str | None:
    """A one-line explanation of jsonargparse's error ``message``, or ``None`` when it is not
    one of the mistakes this module knows."""
    return (
        _moved_option(message)
        or _unknown_class(message)
        or _wrong_value(message)
        or _unknown_option(message, parser)
    )


def _option_path(message: str) -> str:
    """``model.backbone.width`` from the nested ``Parser key "..."`` lines of ``message``."""
    return ".".join(re.findall(r'Parser key "([\w.]+)"', message))


def _unknown_class(message: str) -> str | None:
    given = re.search(
        r"Expected a dot import path string: ([\w.]+)|Problem with given class_path '([\w.]+)':\s*"
        r"\n\s*(?:module '[\w.]+' has no attribute|Import path does not correspond|No module)",
        message,
    )
    if given is None:
        return None
    value = given.group(1) or given.group(2)
    path = _option_path(message.split(value)[0]) or "model"
    key = "backbone" if path.endswith("backbone") else path
    kind = _kinds().get(key)
    if kind is None:
        return None
    what, names, own = kind
    close = difflib.get_close_matches(value.rsplit(".", 1)[-1], names, n=1, cutoff=0.5)
    close += [name for name in names if name.lower() == value.lower() and name not in close]
    hint = f" Did you mean {close[-1]}?" if close else ""
    return f"--{path} {value!r} is not a known {what}.{hint} Accepted: {', '.join(names)}, {own}."


def _wrong_value(message: str) -> str | None:
    leaf = re.search(r"Expected a (.+?)\. Got value: (.*)", message)
    if leaf is not None:
        expected, value = leaf.groups()
        path = _option_path(message.split(leaf.group(0))[0])
    else:
        union = re.search(
            r'Parser key "([\w.]+)":\s*\n\s*Does not validate against any of the Union subtypes'
            r"\s*\n\s*Subtypes: \[(.*)\].*Given value: (.*)",
            message,
            flags=re.DOTALL,
        )
        if union is None or "NestedArg" in union.group(3):
            return None
        path, expected, value = union.groups()
        value = value.strip().splitlines()[0]
    if not path:
        return None
    return f"--{path} must be {_describe_type(expected)}, got {value.strip()!r}."


def _describe_type(expected: str) -> str:
    literal = re.search(r"Literal\[(.*)\]", expected)
    if literal:
        return "one of " + ", ".join(choice.strip(" '\"") for choice in literal.group(1).split(","))
    names = [
        _TYPE_NAMES.get(name, name)
        for name in re.findall(r"<class '(\w+)'>", expected)
        if name != "NoneType"
    ]
    if "NoneType" in expected:
        names.append("null")
    return " or ".join(names) if names else expected


def _moved_option(message: str) -> str | None:
    unknown = _unknown_option_name(message)
    if unknown is None:
        return None
    if unknown in RENAMED_OPTIONS:
        return f"--{unknown} moved in rotaux 0.2: use --{RENAMED_OPTIONS[unknown]}."
    if unknown in REMOVED_OPTIONS:
        return f"--{unknown} no longer exists: {REMOVED_OPTIONS[unknown]}."
    return None


def _unknown_option_name(message: str) -> str | None:
    """The full name (``model.proj_dim``) of the unknown option that ``message`` reports."""
    model_option = _UNKNOWN_MODEL_OPTION.search(message)
    if model_option:
        return f"model.{model_option.group(2)}"
    option = re.search(
        r"does not accept option '([\w.]+)'|unrecognized arguments: --([\w.]+)", message
    )
    if option is None:
        return None
    return (option.group(1) or option.group(2)).replace(".init_args.", ".")


def _unknown_option(message: str, parser: Any) -> str | None:
    unknown = _unknown_option_name(message)
    if unknown is None:
        return None
    model_option = _UNKNOWN_MODEL_OPTION.search(message)
    if model_option:
        module, _, name = model_option.group(1).rpartition(".")
        options = {
            f"model.{parameter}"
            for cls in getattr(importlib.import_module(module), name).__mro__
            if "__init__" in vars(cls)
            for parameter in inspect.signature(cls.__init__).parameters
            if parameter not in ("self", "base_options", "args", "kwargs")
        }
    else:
        # a config file's keys are checked by the main parser, the options by the subcommand's
        subcommands = getattr(parser, "_subcommands_action", None)
        parsers = [parser, *(subcommands.choices.values() if subcommands else [])]
        options = {action.dest for each in parsers for action in each._actions}
    matches = difflib.get_close_matches(unknown, sorted(options), n=1)
    hint = f" Did you mean --{matches[0]}?" if matches else ""
    return f"Unknown option --{unknown}.{hint} `rotaux fit --help` lists the options."
