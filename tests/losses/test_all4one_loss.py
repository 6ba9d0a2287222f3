import math

import torch
from ddp import run_distributed

from rotaux.losses.all4one import (
    centroid_contrast_loss,
    feature_contrast_loss,
    nearest_neighbour_sets,
    neighbour_slot_encoding,
)


def _unit(row: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in row))
    return [x / norm for x in row]


def _naive_nt_xent(anchors, candidates, temperature: float) -> float:
    a_rows, c_rows = [_unit(r) for r in anchors.tolist()], [_unit(r) for r in candidates.tolist()]
    total = 0.0
    for i, a in enumerate(a_rows):
        logits = [sum(x * y for x, y in zip(a, c, strict=True)) / temperature for c in c_rows]
        total += math.log(sum(math.exp(logit) for logit in logits)) - logits[i]
    return total / len(a_rows)


def _naive_feature_contrast(t1, o1, t2, o2) -> float:
    """Column-cosine matrices with explicit loops in float64, then the two root-mean-squares."""

    def columns(matrix) -> list[list[float]]:
        rows = matrix.tolist()
        return [_unit([row[j] for row in rows]) for j in range(len(rows[0]))]

    def correlation(targets, online) -> list[list[float]]:
        t_cols, o_cols = columns(targets), columns(online)
        return [[sum(a * b for a, b in zip(t, o, strict=True)) for o in o_cols] for t in t_cols]

    on_terms, off_terms = [], []
    for matrix in (correlation(t1, o2), correlation(t2, o1)):
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                if i == j:
                    on_terms.append((value - 1) ** 2)
                else:
                    off_terms.append(value**2)
    on = math.sqrt(sum(on_terms) / len(on_terms))
    off = math.sqrt(sum(off_terms) / len(off_terms))
    return (on + off) / 2


def test_neighbour_sets_are_the_top_rows_by_cosine_most_similar_first():
    support = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [3.0, 2.9], [1.0, -0.2]])
    embeddings = torch.tensor([[2.0, 0.1], [-0.1, 1.0]])
    sets = nearest_neighbour_sets(embeddings, support, 3)
    unit = torch.nn.functional.normalize(support, dim=1)
    # [2, 0.1]: [1, 0] (cos .999), [1, -0.2] (.976), then [3, 2.9] (.766), not the norm's order
    torch.testing.assert_close(sets[0], unit[[0, 4, 3]])
    torch.testing.assert_close(sets[1], unit[[1, 3, 2]])
    assert sets.shape == (2, 3, 2) and not sets.requires_grad


def test_slot_encoding_is_the_official_feature_axis_sinusoid():
    encoding = neighbour_slot_encoding(5, 7)
    assert encoding.shape == (5, 7)
    # 5 slots use 6 channels: frequencies 1, 10000 ** (-1/3), 10000 ** (-2/3)
    assert math.isclose(encoding[0, 1].item(), math.sin(1.0), rel_tol=1e-6)  # slot 0: sin(d)
    assert encoding[1, 0].item() == 1.0  # slot 1: cos(0)
    assert math.isclose(encoding[2, 3].item(), math.sin(3 * 10000 ** (-1 / 3)), rel_tol=1e-6)
    assert math.isclose(encoding[3, 6].item(), math.cos(6 * 10000 ** (-1 / 3)), rel_tol=1e-6)
    assert math.isclose(encoding[4, 5].item(), math.sin(5 * 10000 ** (-2 / 3)), rel_tol=1e-6)
    # every slot gets its own offset
    assert len({tuple(row.tolist()) for row in encoding}) == 5


def test_centroid_contrast_matches_naive_loop_with_gradient_to_both_sides():
    generator = torch.Generator().manual_seed(0)
    anchors = torch.randn(5, 4, generator=generator, requires_grad=True)
    candidates = torch.randn(5, 4, generator=generator, requires_grad=True)
    loss = centroid_contrast_loss(anchors, candidates, 0.1)
    expected = _naive_nt_xent(anchors.detach(), candidates.detach(), 0.1)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    loss.backward()
    assert anchors.grad.abs().sum() > 0 and candidates.grad.abs().sum() > 0


def test_feature_contrast_matches_naive_loop_and_reaches_zero_for_identical_whitened_columns():
    generator = torch.Generator().manual_seed(0)
    t1, o1, t2, o2 = (torch.randn(9, 4, generator=generator) for _ in range(4))
    o1.requires_grad_(True)
    loss = feature_contrast_loss(t1, o1, t2, o2)
    assert math.isclose(loss.item(), _naive_feature_contrast(t1, o1, t2, o2), rel_tol=1e-5)
    loss.backward()
    assert o1.grad.abs().sum() > 0
    # orthogonal columns, the same in both views up to a per-column scale: C = I, loss 0
    orthogonal = torch.linalg.qr(torch.randn(9, 4, generator=generator)).Q
    scaled = orthogonal * torch.tensor([1.0, 2.0, 3.0, 4.0])
    zero = feature_contrast_loss(orthogonal, scaled, scaled, orthogonal)
    assert zero.item() < 1e-3


def test_feature_contrast_gives_no_gradient_to_the_targets():
    generator = torch.Generator().manual_seed(1)
    t1, o1, t2, o2 = (torch.randn(6, 3, generator=generator, requires_grad=True) for _ in range(4))
    feature_contrast_loss(t1, o1, t2, o2).backward()
    assert t1.grad is None and t2.grad is None


def _mixing_on_rank(rank: int, world_size: int, inputs: dict) -> dict:
    local = {
        name: tensor.chunk(world_size)[rank].clone().requires_grad_(True)
        for name, tensor in inputs.items()
    }
    centroid = centroid_contrast_loss(local["anchors"], local["candidates"], 0.1)
    feature = feature_contrast_loss(local["t1"], local["o1"], local["t2"], local["o2"])
    (centroid + feature).backward()
    return {
        "centroid": centroid.detach(),
        "feature": feature.detach(),
        **{name: tensor.grad for name, tensor in local.items()},
    }


def test_centroid_and_feature_contrast_on_two_ranks_match_one_process_with_the_whole_batch():
    generator = torch.Generator().manual_seed(2)
    inputs = {
        name: torch.randn(8, 4, generator=generator)
        for name in ("anchors", "candidates", "t1", "o1", "t2", "o2")
    }
    ranks = run_distributed(_mixing_on_rank, inputs)
    single = {name: tensor.clone().requires_grad_(True) for name, tensor in inputs.items()}
    centroid = centroid_contrast_loss(single["anchors"], single["candidates"], 0.1)
    feature = feature_contrast_loss(single["t1"], single["o1"], single["t2"], single["o2"])
    (centroid + feature).backward()
    # DDP averages the ranks' gradients; the centroid loss is a mean over equal halves, the
    # feature loss the same global value on every rank
    torch.testing.assert_close(
        torch.stack([r["centroid"] for r in ranks]).mean(), centroid.detach()
    )
    for result in ranks:
        torch.testing.assert_close(result["feature"], feature.detach())
    for name in ("anchors", "candidates", "o1", "o2"):
        torch.testing.assert_close(torch.cat([r[name] / 2 for r in ranks]), single[name].grad)
