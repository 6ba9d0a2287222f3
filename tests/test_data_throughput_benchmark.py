"""The data throughput benchmark measures every input path on both sources."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import data_throughput  # noqa: E402


def test_a_tiny_run_times_every_path_on_both_sources(capsys):
    rows = data_throughput.main(
        ["--images", "24", "--batch-size", "4", "--image-size", "32", "--resize", "36"]
    )
    assert [(row.source, row.decode, row.augment) for row in rows] == [
        (source, decode, augment)
        for source in ("image folder", "shards")
        for decode, augment in data_throughput.PATHS
    ]
    # 24 images less the 10% validation hold-out: 5 batches of 4, the first one untimed
    assert all(row.images == 16 and row.images_per_s > 0 for row in rows)
    table = capsys.readouterr().out
    assert table.count("| shards |") == 3 and table.count("| image folder |") == 3
