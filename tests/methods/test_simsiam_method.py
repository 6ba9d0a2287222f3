import pytest
from cli_utils import check_rotation_switch, printed_model_options

from rotaux.methods.simsiam import SimSiam

MODEL = "rotaux.methods.simsiam.SimSiam"


@pytest.mark.parametrize("rotation", [True, False], ids=["default_rotation", "weight_0"])
def test_simsiam_fits_and_logs_rotation_metrics_only_with_rotation(tmp_path, rotation):
    check_rotation_switch(tmp_path, MODEL, rotation, "--model.pred_hidden_dim", "16")


def test_simsiam_print_config_lists_every_constructor_option(capsys):
    options = printed_model_options(capsys, MODEL, SimSiam)
    assert options["pred_hidden_dim"] == 512
    assert options["optimizer"]["name"] == "sgd"
    assert options["optimizer"]["lr"] == 0.5
