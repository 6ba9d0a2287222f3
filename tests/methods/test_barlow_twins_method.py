import pytest
from cli_utils import check_rotation_switch, printed_model_options

from rotaux.methods.barlow_twins import BarlowTwins

MODEL = "rotaux.methods.barlow_twins.BarlowTwins"


@pytest.mark.parametrize("rotation", [True, False], ids=["default_rotation", "weight_0"])
def test_barlow_twins_fits_and_logs_rotation_metrics_only_with_rotation(tmp_path, rotation):
    check_rotation_switch(tmp_path, MODEL, rotation)


def test_barlow_twins_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, BarlowTwins)
    assert options["lambd"] == 0.0051
    assert options["scale_loss"] == 0.1
    assert options["optimizer"]["lr"] == 0.3
