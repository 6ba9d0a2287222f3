import pytest
from cli_utils import check_rotation_switch, printed_model_options

from rotaux.methods.simclr import SimCLR

MODEL = "rotaux.methods.simclr.SimCLR"


@pytest.mark.parametrize("rotation", [True, False], ids=["default_rotation", "weight_0"])
def test_simclr_fits_and_logs_rotation_metrics_only_with_rotation(tmp_path, rotation):
    check_rotation_switch(tmp_path, MODEL, rotation)


def test_simclr_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, SimCLR)
    assert options["temperature"] == 0.2
    assert options["optimizer"]["lr"] == 0.4
