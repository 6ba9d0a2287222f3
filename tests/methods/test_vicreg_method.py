import pytest
from cli_utils import check_rotation_switch, printed_model_options

from rotaux.methods.vicreg import VICReg

MODEL = "rotaux.methods.vicreg.VICReg"


@pytest.mark.parametrize("rotation", [True, False], ids=["default_rotation", "weight_0"])
def test_vicreg_fits_and_logs_rotation_metrics_only_with_rotation(tmp_path, rotation):
    check_rotation_switch(tmp_path, MODEL, rotation)


def test_vicreg_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, VICReg)
    assert options["invariance_weight"] == 25.0
    assert options["variance_weight"] == 25.0
    assert options["covariance_weight"] == 1.0
    assert options["optimizer"]["lr"] == 0.3
