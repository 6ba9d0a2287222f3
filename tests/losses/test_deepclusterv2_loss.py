import math

import pytest
import torch
import torch.nn.functional as F
from ddp import run_distributed

from rotaux.errors import RotauxError
from rotaux.losses.deepclusterv2 import deepclusterv2_loss, spherical_kmeans
from rotaux.methods.deepclusterv2 import ClusterMemory


def _unit_rows(count: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(count, dim, generator=generator), dim=1)


def _naive_kmeans(rows: torch.Tensor, start: list[int], num_iters: int) -> tuple[list, list]:
    """The official algorithm row by row in float64: nearest centroid by dot product (first on
    ties), centroid = normalised mean of its rows, a centroid without rows kept."""
    points = [[float(x) for x in row] for row in rows.double()]
    centroids = [points[i] for i in start]

    def nearest(point: list[float]) -> int:
        dots = [sum(p * c for p, c in zip(point, centroid, strict=True)) for centroid in centroids]
        return dots.index(max(dots))

    for _ in range(num_iters):
        clusters = [nearest(point) for point in points]
        for k in range(len(centroids)):
            members = [points[i] for i in range(len(points)) if clusters[i] == k]
            if members:
                mean = [sum(column) / len(members) for column in zip(*members, strict=True)]
                norm = math.sqrt(sum(x * x for x in mean))
                centroids[k] = [x / norm for x in mean]
    return centroids, [nearest(point) for point in points]


def test_kmeans_matches_the_official_algorithm_computed_naively():
    rows = _unit_rows(23, 5, seed=0)
    start = torch.randperm(23, generator=torch.Generator().manual_seed(7))[:4].tolist()
    expected_centroids, expected_clusters = _naive_kmeans(rows, start, num_iters=6)
    # chunks of 5 rows: the chunked assignment and sums must not change the result
    centroids, clusters = spherical_kmeans(
        rows, 4, 6, torch.Generator().manual_seed(7), chunk_size=5
    )
    assert clusters.tolist() == expected_clusters
    torch.testing.assert_close(centroids, torch.tensor(expected_centroids, dtype=torch.float32))
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(4))


def test_kmeans_keeps_a_centroid_that_gets_no_rows():
    a, b = F.normalize(torch.tensor([1.0, 1.0]), dim=0), torch.tensor([0.0, -1.0])
    # 3 clusters of [a, a, b]: the two centroids started at copies of a tie, the first of them
    # takes both a rows, and the other keeps its place
    centroids, clusters = spherical_kmeans(
        torch.stack([a, a, b]), 3, 10, torch.Generator().manual_seed(0)
    )
    assert clusters[0] == clusters[1] != clusters[2]
    torch.testing.assert_close(centroids[clusters[2]], b)
    empty = ({0, 1, 2} - {int(clusters[0]), int(clusters[2])}).pop()
    torch.testing.assert_close(centroids[empty], a)
    torch.testing.assert_close(centroids[clusters[0]], a)


def test_kmeans_refuses_more_clusters_than_rows():
    with pytest.raises(RotauxError, match="num_prototypes"):
        spherical_kmeans(_unit_rows(3, 4, seed=1), 4, 10, torch.Generator())


def _naive_loss(scores: torch.Tensor, assignments: torch.Tensor, temperature: float) -> float:
    num_sets, num_crops, batch_size, _ = scores.shape
    total = 0.0
    for h in range(num_sets):
        terms = []
        for v in range(num_crops):
            for b in range(batch_size):
                target = int(assignments[h, b])
                if target < 0:
                    continue
                logits = [float(x) / temperature for x in scores[h, v, b].double()]
                log_z = math.log(sum(math.exp(x) for x in logits))
                terms.append(log_z - logits[target])
        total += sum(terms) / len(terms)
    return total / num_sets


def test_loss_of_uniform_scores_is_log_num_prototypes():
    assignments = torch.tensor([[0, 3, -1], [2, 2, -1]])
    loss = deepclusterv2_loss(torch.zeros(2, 3, 3, 5), assignments, temperature=0.1)
    assert math.isclose(loss.item(), math.log(5), rel_tol=1e-6)


def test_loss_matches_naive_loop_and_leaves_out_unassigned_samples():
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 2, 6, 4, generator=generator).tanh().requires_grad_(True)
    assignments = torch.tensor([[1, -1, 0, 3, -1, 2], [0, -1, 0, 1, -1, 1], [3, -1, 2, 2, -1, 0]])
    loss = deepclusterv2_loss(scores, assignments, temperature=0.1)
    assert math.isclose(loss.item(), _naive_loss(scores.detach(), assignments, 0.1), rel_tol=1e-5)
    loss.backward()
    assert scores.grad[:, :, [1, 4]].abs().max() == 0
    assert scores.grad[:, :, [0, 2, 3, 5]].abs().min() > 0


def test_loss_without_assigned_samples_is_zero_with_a_zero_gradient():
    scores = torch.randn(2, 2, 4, 3).requires_grad_(True)
    loss = deepclusterv2_loss(scores, torch.full((2, 4), -1), temperature=0.1)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(scores.grad, torch.zeros_like(scores))


def _kmeans_on_rank(rank: int, world_size: int, rows: torch.Tensor) -> tuple:
    return spherical_kmeans(rows, 5, 4, torch.Generator().manual_seed(3), chunk_size=4)


def _loss_on_rank(rank: int, world_size: int, scores, assignments) -> tuple:
    local = scores.chunk(world_size, dim=2)[rank].clone().requires_grad_(True)
    loss = deepclusterv2_loss(local, assignments.chunk(world_size, dim=1)[rank], 0.1)
    loss.backward()
    return loss.detach(), local.grad


def _memory_on_rank(rank: int, world_size: int, indices, crops) -> dict:
    """Each rank stores its share of a batch into a memory of 10 samples, then clusters it."""
    torch.manual_seed(0)
    memory = ClusterMemory(num_crops=2, dim=4, num_prototypes=3, num_sets=3, seed=5)
    memory.allocate(10)
    share = slice(rank * len(indices) // world_size, (rank + 1) * len(indices) // world_size)
    memory.store(indices[share], [crop[share] for crop in crops])
    memory.commit()
    memory.cluster(epoch=1, num_iters=3)
    return {name: buffer.clone() for name, buffer in memory.state_dict().items()}


# the inputs of the 2-rank checks, all run in one spawn
ROWS = _unit_rows(13, 3, seed=4)  # 13 rows: the ranks' shares differ in size
SCORES = torch.randn(2, 3, 8, 4, generator=torch.Generator().manual_seed(5)).tanh()
# rank 0's half has 1 assigned sample, rank 1's half 3: the global count must be used
ASSIGNMENTS = torch.tensor([[-1, 2, -1, -1, 0, 1, 3, 3], [-1, 1, -1, -1, 2, 0, 0, 1]])
INDICES = torch.tensor([7, 2, 9, 0, 4, 5])
CROPS = [_unit_rows(6, 4, seed=6), _unit_rows(6, 4, seed=7)]


def _all_on_rank(rank: int, world_size: int) -> dict:
    return {
        "kmeans": _kmeans_on_rank(rank, world_size, ROWS),
        "loss": _loss_on_rank(rank, world_size, SCORES, ASSIGNMENTS),
        "memory": _memory_on_rank(rank, world_size, INDICES, CROPS),
    }


@pytest.fixture(scope="module")
def two_ranks() -> list[dict]:
    return run_distributed(_all_on_rank)


def test_kmeans_on_two_ranks_gives_every_rank_the_single_process_result(two_ranks):
    centroids, clusters = _kmeans_on_rank(0, 1, ROWS)
    for result in two_ranks:
        rank_centroids, rank_clusters = result["kmeans"]
        torch.testing.assert_close(rank_centroids, centroids)
        assert torch.equal(rank_clusters, clusters)


def test_loss_on_two_ranks_matches_one_process_with_the_whole_batch(two_ranks):
    loss, grad = _loss_on_rank(0, 1, SCORES, ASSIGNMENTS)
    results = [result["loss"] for result in two_ranks]
    torch.testing.assert_close(sum(result[0] for result in results) / 2, loss)
    torch.testing.assert_close(torch.cat([result[1] / 2 for result in results], dim=2), grad)


def test_memory_filled_from_two_ranks_clusters_like_one_process_with_the_whole_batch(two_ranks):
    expected = _memory_on_rank(0, 1, INDICES, CROPS)
    assert expected["filled"].tolist() == [i in INDICES.tolist() for i in range(10)]
    torch.testing.assert_close(expected["embeddings"][1, 9], CROPS[1][2])
    assigned = expected["assignments"]
    assert (assigned[:, [1, 3, 6, 8]] == -1).all() and (assigned[:, INDICES] >= 0).all()
    assert expected["clustered_epoch"] == 1
    for result in two_ranks:
        state = result["memory"]
        assert state.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(state[name], value, rtol=0, atol=0)


def test_memory_takes_stored_embeddings_only_at_commit():
    memory = ClusterMemory(num_crops=1, dim=4, num_prototypes=2, num_sets=1, seed=0)
    memory.allocate(5)
    rows = _unit_rows(2, 4, seed=8)
    memory.store(torch.tensor([4, 1]), [rows])
    assert not memory.filled.any()
    memory.commit()
    assert memory.filled.tolist() == [False, True, False, False, True]
    torch.testing.assert_close(memory.embeddings[0, [4, 1]], rows)
