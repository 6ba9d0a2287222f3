"""Shared test set-up: makes the helpers in tests/ (ddp.py, cli_utils.py) importable from
every test folder, and keeps torch to one thread per test process on small CPUs."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
