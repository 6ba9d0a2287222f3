import math

import torch
from ddp import run_distributed

from rotaux.losses.simclr import nt_xent_loss
from rotaux.losses.supcon import supcon_loss


def _naive_supcon(views: list[torch.Tensor], labels: list[int], temperature: float) -> float:
    """Eq. 2 of the paper over the V x N embeddings, loops in float64; label -1 shares with
    nobody but its own other views."""
    embeddings, owners = [], []
    for view in views:
        for sample, vector in enumerate(view.double()):
            embeddings.append(vector / vector.norm())
            owners.append(sample)
    total = 0.0
    for i, anchor in enumerate(embeddings):
        others = [a for a in range(len(embeddings)) if a != i]
        logits = {a: float(anchor @ embeddings[a]) / temperature for a in others}
        log_z = math.log(sum(math.exp(value) for value in logits.values()))

        def shares(a: int, i: int = i) -> bool:
            mine, theirs = labels[owners[i]], labels[owners[a]]
            return owners[a] == owners[i] or (mine >= 0 and mine == theirs)

        positives = [a for a in others if shares(a)]
        total -= sum(logits[p] - log_z for p in positives) / len(positives)
    return total / len(embeddings)


def test_supcon_of_two_views_per_sample_matches_hand_computed_value():
    # samples 0 and 1 share a label; every embedding is e_1 or e_2
    e_1, e_2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    views = [torch.stack([e_1, e_1, e_2]), torch.stack([e_1, e_1, e_2])]
    # an anchor e_1 of sample 0 or 1: 3 positives at cosine 1 among 3 x e_1 and 2 x e_2 (cosine 0)
    # an anchor e_2 of sample 2: 1 positive at cosine 1 among 1 x e_2 and 4 x e_1
    e = math.e
    expected = (4 * math.log(3 * e + 2) + 2 * math.log(e + 4)) / 6 - 1
    loss = supcon_loss(views, torch.tensor([5, 5, 2]), temperature=1.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_supcon_matches_naive_loop_with_three_views_and_unlabelled_samples():
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(6, 4, generator=generator) for _ in range(3)]
    labels = [1, -1, 1, 0, -1, 0]
    loss = supcon_loss(views, torch.tensor(labels), temperature=0.2)
    assert math.isclose(loss.item(), _naive_supcon(views, labels, 0.2), rel_tol=1e-5)


def test_supcon_without_shared_labels_is_simclr():
    generator = torch.Generator().manual_seed(1)
    z_1, z_2 = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    simclr = nt_xent_loss(z_1, z_2, temperature=0.2)
    # unlabelled samples (-1) only have their own other view as positive
    torch.testing.assert_close(supcon_loss([z_1, z_2], torch.full((5,), -1), 0.2), simclr)
    torch.testing.assert_close(supcon_loss([z_1, z_2], torch.arange(5), 0.2), simclr)


def test_supcon_stays_float32_under_bf16_autocast():
    generator = torch.Generator().manual_seed(2)
    views = [torch.randn(16, 32, generator=generator) for _ in range(2)]
    labels = torch.arange(16) % 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = supcon_loss(views, labels)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, supcon_loss(views, labels))


def _loss_and_grads(rank: int, world_size: int, views, labels) -> tuple:
    local = [view.chunk(world_size)[rank].clone().requires_grad_(True) for view in views]
    loss = supcon_loss(local, labels.chunk(world_size)[rank], temperature=0.2)
    loss.backward()
    return loss.detach(), [view.grad for view in local]


def test_supcon_under_ddp_finds_positives_on_the_other_rank():
    generator = torch.Generator().manual_seed(3)
    views = [torch.randn(8, 6, generator=generator) for _ in range(2)]
    # labels 0 and 1 have samples on both ranks; the -1 samples on both ranks stay apart
    labels = torch.tensor([0, 1, -1, 2, 1, 0, -1, 3])
    expected_loss, expected_grads = _loss_and_grads(0, 1, views, labels)
    results = run_distributed(_loss_and_grads, views, labels)
    # each rank averages over its own anchors; DDP averages the gradients over the 2 ranks
    torch.testing.assert_close(sum(loss for loss, _ in results) / 2, expected_loss)
    for view in range(2):
        ranks_grad = torch.cat([grads[view] / 2 for _, grads in results])
        torch.testing.assert_close(ranks_grad, expected_grads[view])
