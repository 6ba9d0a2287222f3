import math

import pytest
import torch
from cli_utils import fit_tiny, read_metrics
from ddp import run_distributed
from lightning import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader

from rotaux.callbacks.collapse import (
    CollapseMonitor,
    CollapseReading,
    EmbeddingStatistics,
)
from rotaux.errors import RotauxError


def statistics_of(*batches: torch.Tensor) -> EmbeddingStatistics:
    statistics = EmbeddingStatistics.zeros(batches[0].shape[1], torch.device("cpu"))
    for batch in batches:
        statistics.update(batch)
    return statistics


def rankme(embeddings: torch.Tensor) -> float:
    return statistics_of(embeddings).rankme()


def naive_rankme(embeddings: torch.Tensor) -> float:
    """The paper's formula on the SVD of the embedding matrix (without its 1e-7)."""
    singular_values = torch.linalg.svdvals(embeddings.double())
    p = singular_values / singular_values.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_k_equal_singular_values_give_rankme_k(k):
    # 3 copies of each of the first k basis vectors scaled by 2: Z^T Z = 12 I_k (in d=16), so Z
    # has k singular values sqrt(12) and RankMe = exp(log k) = k
    embeddings = 2 * torch.eye(k, 16).repeat(3, 1)
    assert rankme(embeddings) == pytest.approx(k, abs=1e-9)


def test_unequal_singular_values_by_hand():
    # singular values 3 and 1 (one per direction): p = (3/4, 1/4), entropy 0.5623351446
    embeddings = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert expected == pytest.approx(1.7548, abs=1e-4)
    assert rankme(embeddings) == pytest.approx(expected, abs=1e-9)
    # a rotation leaves the singular values alone
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))[0]
    assert rankme(embeddings @ rotation) == pytest.approx(expected, abs=1e-6)


def test_collapsed_embeddings_have_rankme_one_and_zero_spread():
    direction = torch.randn(64, generator=torch.Generator().manual_seed(0))
    constant = direction.repeat(100, 1)
    scales = torch.rand(100, 1, generator=torch.Generator().manual_seed(1)) + 0.5
    rank_one = scales * direction
    for embeddings in (constant, rank_one):
        statistics = statistics_of(embeddings)
        assert statistics.rankme() == pytest.approx(1.0, abs=1e-4)
        assert statistics.normalised_std() == pytest.approx(0.0, abs=1e-6)
    assert rankme(torch.zeros(10, 8)) == 0.0


def test_gram_rankme_equals_svd_rankme_on_a_spread_spectrum():
    generator = torch.Generator().manual_seed(2)
    spectrum = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5, 0.1, 0.0, 0.0])
    left = torch.linalg.qr(torch.randn(200, 8, generator=generator))[0]
    right = torch.linalg.qr(torch.randn(8, 8, generator=generator))[0]
    embeddings = left @ torch.diag(spectrum) @ right
    assert rankme(embeddings) == pytest.approx(naive_rankme(embeddings), rel=1e-5)
    # more dimensions than samples: at most N non-zero singular values
    wide = torch.randn(5, 40, generator=generator)
    assert rankme(wide) == pytest.approx(naive_rankme(wide), rel=1e-6)
    assert rankme(wide) <= 5


def test_normalised_std_by_hand():
    # normalised rows alternate (1, 0) and (0, 1): each dimension takes 1 and 0 equally often,
    # a population std of 0.5
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    assert statistics_of(embeddings).normalised_std() == pytest.approx(0.5, abs=1e-12)
    # batches accumulate into the statistics of their concatenation
    split = statistics_of(embeddings[:1], embeddings[1:])
    assert split.normalised_std() == pytest.approx(0.5, abs=1e-12)
    assert split.rankme() == pytest.approx(rankme(embeddings), abs=1e-12)


def test_isotropic_gaussian_is_healthy():
    d = 16
    embeddings = torch.randn(20000, d, generator=torch.Generator().manual_seed(3))
    statistics = statistics_of(embeddings)
    # N >> d: the singular values are all within a few % of sqrt(N) (Marchenko-Pastur)
    assert statistics.rankme() == pytest.approx(d, rel=0.01)
    # each coordinate of a uniform point on the sphere has variance 1/d
    assert statistics.normalised_std() * math.sqrt(d) == pytest.approx(1.0, abs=0.02)


def reading_of(name: str, embeddings: torch.Tensor) -> CollapseReading:
    statistics = statistics_of(embeddings)
    return CollapseReading(
        name, len(embeddings), embeddings.shape[1], statistics.rankme(), statistics.normalised_std()
    )


def test_thresholds_flag_collapse_and_pass_healthy_embeddings():
    monitor = CollapseMonitor()
    generator = torch.Generator().manual_seed(4)
    healthy = reading_of("projector", torch.randn(1000, 256, generator=generator))
    constant = reading_of("projector", torch.ones(1000, 256))
    # a few directions only: 2 of 256 dimensions used, rank 2 < 0.01 * 256; spread healthy
    few_directions = torch.zeros(1000, 256)
    few_directions[:, :2] = torch.randn(1000, 2, generator=generator)
    dimensional = reading_of("projector", few_directions)
    assert monitor.diagnose(healthy) == []
    problems = monitor.diagnose(constant)
    assert len(problems) == 2
    assert "RankMe 1.00 < 2.56 (0.01 x min(N=1000, d=256))" in problems[0]
    assert "normalised std 0.00e+00 < 6.25e-04 (0.01 / sqrt(d=256))" in problems[1]
    assert [p.split(" <")[0] for p in monitor.diagnose(dimensional)] == ["projector RankMe 2.00"]
    with pytest.raises(RotauxError, match="min_rank_fraction"):
        CollapseMonitor(min_rank_fraction=1.5)


def _rank_statistics(rank: int, world_size: int, shards: list[torch.Tensor]) -> tuple:
    statistics = EmbeddingStatistics.zeros(shards[rank].shape[1], torch.device("cpu"))
    # uneven batches on each rank
    for batch in shards[rank].split(7):
        statistics.update(batch)
    total = statistics.all_reduce()
    return total.count.item(), total.rankme(), total.normalised_std()


def test_two_processes_read_what_one_process_reads_on_the_whole_set():
    generator = torch.Generator().manual_seed(5)
    embeddings = torch.randn(40, 12, generator=generator) @ torch.randn(12, 12, generator=generator)
    embeddings[:, :3] += 4.0  # not centred, as ReLU features are not
    whole = statistics_of(embeddings)
    results = run_distributed(_rank_statistics, [embeddings[:24], embeddings[24:]])
    for count, rank_me, std in results:
        assert count == 40
        assert rank_me == pytest.approx(whole.rankme(), rel=1e-9)
        assert std == pytest.approx(whole.normalised_std(), rel=1e-9)
    # and the halves alone read differently, so the reduction did something
    assert _rank_statistics(0, 1, [embeddings[:24]])[1] != pytest.approx(whole.rankme(), rel=1e-3)


class _FixedEmbeddings(LightningModule):
    """Trains nothing; its validation features are ``collapsed`` (all alike) or Gaussian, and its
    projector doubles them."""

    def __init__(self, collapsed: bool) -> None:
        super().__init__()
        self.collapsed = collapsed
        self.weight = nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return (self.weight * batch.sum()).square()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict:
        if self.collapsed:
            return {"features": torch.ones(len(batch), 32)}
        generator = torch.Generator().manual_seed(batch_idx)
        return {"features": torch.randn(len(batch), 32, generator=generator)}

    def validation_embeddings(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"backbone": features, "projector": 2 * features[:, :16]}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(collapsed: bool, monitor: CollapseMonitor, tmp_path) -> Trainer:
    trainer = Trainer(
        max_epochs=3,
        accelerator="cpu",
        callbacks=[monitor],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    loader = DataLoader(torch.randn(64, 4), batch_size=16)
    trainer.fit(_FixedEmbeddings(collapsed), loader, loader)
    return trainer


def test_collapsed_run_warns_and_stops_when_asked(tmp_path):
    with pytest.warns(UserWarning, match="collapsed at epoch 0.*stop_on_collapse true to stop"):
        trainer = _fit(True, CollapseMonitor(), tmp_path)
    assert trainer.current_epoch == 3  # only warned
    assert trainer.callback_metrics["val/rankme/projector"] == pytest.approx(1.0, abs=1e-4)
    # d = 32: the rank threshold (0.32) is below any RankMe; the spread criterion catches it
    with pytest.warns(UserWarning, match=r"backbone normalised std 0.00e\+00 < .*Stopping the run"):
        trainer = _fit(True, CollapseMonitor(stop_on_collapse=True), tmp_path)
    assert trainer.current_epoch == 1


def test_healthy_run_logs_both_embeddings_without_warning(tmp_path, recwarn):
    monitor = CollapseMonitor(stop_on_collapse=True)
    trainer = _fit(False, monitor, tmp_path)
    assert trainer.current_epoch == 3
    assert not [w for w in recwarn if "collapsed" in str(w.message)]
    assert [reading.name for reading in monitor.readings] == ["backbone", "projector"]
    backbone, projector = monitor.readings
    assert backbone.samples == 64 and backbone.dim == 32 and projector.dim == 16
    # 64 Gaussian samples in 32 dimensions: far from collapse, below the full 32
    assert 20 < backbone.rankme < 32
    assert trainer.callback_metrics["val/norm_std/projector"] == pytest.approx(
        projector.normalised_std
    )


def test_cli_logs_rankme_of_backbone_and_projector(tmp_path):
    run = fit_tiny(
        tmp_path, "BYOL", "--model.proj_output_dim", "32", "--model.proj_hidden_dim", "64"
    )
    logged = set().union(*read_metrics(run))
    assert {"val/rankme/backbone", "val/rankme/projector", "val/norm_std/projector"} <= logged
    run = fit_tiny(tmp_path / "off", "BYOL", "--collapse.enabled", "false")
    assert not any(key.startswith("val/rankme") for key in set().union(*read_metrics(run)))
