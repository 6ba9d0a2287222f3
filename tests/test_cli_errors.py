"""Every rejected command line is answered by rotaux in one line that names the option, the
value and the fix, instead of a usage text and a nested dump."""

import pytest
import torch

from rotaux.cli import main


def _error(capsys, *arguments: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(arguments))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rotaux: error:")]
    assert len(lines) == 1, err
    assert "usage:" not in err and "NestedArg" not in err and "Union subtypes" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--model.rotation_weight", "abc"], "--model.rotation_weight must be a number, got 'abc'"),
        (
            ["--model.rotation_source", "up"],
            "--model.rotation_source must be one of crop, view, views",
        ),
        (
            ["--model.backbone.width", "wide"],
            "--model.backbone.width must be an integer, got 'wide'",
        ),
        (["--data.batch_size", "many"], "--data.batch_size must be an integer, got 'many'"),
        (["--trainer.max_epochs", "ten"], "--trainer.max_epochs must be an integer or null"),
    ],
)
def test_a_value_of_the_wrong_type_names_option_value_and_type(capsys, arguments, expected):
    assert expected in _error(capsys, "fit", "--model", "BYOL", *arguments)


def test_an_unknown_method_lists_the_registered_ones(capsys):
    line = _error(capsys, "fit", "--model", "rotaux.NoSuchMethod")
    assert "--model 'rotaux.NoSuchMethod' is not a known method" in line
    assert "BYOL" in line and "SwAV" in line and "MoCoV3" in line
    assert "subclass of your own" in line


def test_a_near_miss_method_gets_a_suggestion(capsys):
    assert "Did you mean BYOL?" in _error(capsys, "fit", "--model", "BYLO")


@pytest.mark.parametrize(
    ("value", "suggestion"), [("imagenet22k", ""), ("cifar10", "Did you mean CIFAR10?")]
)
def test_an_unknown_dataset_lists_the_accepted_names_plainly(capsys, value, suggestion):
    line = _error(capsys, "fit", "--model", "BYOL", "--data.dataset", value)
    assert f"--data.dataset '{value}' is not a known data source" in line
    assert "CIFAR10, CIFAR100, STL10, ImageFolder" in line
    assert "Literal" not in line and suggestion in line


def test_an_unknown_backbone_lists_the_families(capsys):
    line = _error(capsys, "fit", "--model", "BYOL", "--model.backbone", "Resnet")
    assert "Did you mean ResNet?" in line and "ViT" in line and "TimmModel" in line


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--data.batchsize", "3"],
            "Unknown option --data.batchsize. Did you mean --data.batch_size?",
        ),
        (["--model.proj_hiden_dim", "3"], "Did you mean --model.proj_hidden_dim?"),
        (["--data.root", "x"], "--data.root moved in rotaux 0.2: use --data.dataset.root"),
        (["--model.backbone_width", "8"], "use --model.backbone.width"),
        (
            ["--data.with_rotation", "true"],
            "--model.rotation_weight 0 turns the rotation input off",
        ),
    ],
)
def test_misspelt_and_moved_options(capsys, arguments, expected):
    assert expected in _error(capsys, "fit", "--model", "BYOL", *arguments)


@pytest.mark.parametrize("option", ["max_epochs", "max_steps"])
def test_a_run_of_zero_epochs_or_steps_is_refused_before_anything_is_built(capsys, option):
    line = _error(capsys, "fit", "--model", "BYOL", f"--trainer.{option}", "0")
    assert f"--trainer.{option} 0 trains nothing" in line


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_a_missing_checkpoint_names_the_path_and_auto_resume(capsys, tmp_path, subcommand):
    missing = tmp_path / "gone.ckpt"
    line = _error(capsys, subcommand, "--model", "BYOL", "--ckpt_path", str(missing))
    assert f"Checkpoint {missing} does not exist" in line and "--auto_resume true" in line


def test_fit_validate_and_export_answer_a_non_checkpoint_alike(capsys, tmp_path):
    fake = tmp_path / "notes.ckpt"
    fake.write_text("not a checkpoint")
    answers = {
        _error(capsys, "fit", "--model", "BYOL", "--ckpt_path", str(fake)),
        _error(capsys, "validate", "--model", "BYOL", "--ckpt_path", str(fake)),
        _error(capsys, "export", str(fake), str(tmp_path / "out")),
    }
    assert len(answers) == 1
    (line,) = answers
    assert f"{fake} is not a PyTorch checkpoint" in line and "weights_only" not in line


def test_a_dict_without_state_dict_is_not_a_lightning_checkpoint(capsys, tmp_path):
    plain = tmp_path / "weights.ckpt"
    torch.save({"weights": torch.zeros(2)}, plain)
    line = _error(capsys, "fit", "--model", "BYOL", "--ckpt_path", str(plain))
    assert "is not a Lightning checkpoint (it has no state_dict)" in line
