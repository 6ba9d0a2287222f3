from cli_utils import fit_tiny, read_metrics

from rotaux.callbacks import TrainingClock


def test_clock_logs_training_time_and_images_seen_per_epoch(tmp_path):
    run = fit_tiny(tmp_path, "BYOL", "--trainer.max_epochs", "2")
    rows = [row for row in read_metrics(run) if "time/images_seen" in row]
    assert [row["time/images_seen"] for row in rows] == [48.0, 96.0]  # 3 batches of 16 per epoch
    assert 0 < rows[0]["time/train_seconds"] < rows[1]["time/train_seconds"]


def test_clock_state_round_trips():
    clock = TrainingClock()
    clock.train_seconds, clock.images_seen = 12.5, 4096
    restored = TrainingClock()
    restored.load_state_dict(clock.state_dict())
    assert (restored.train_seconds, restored.images_seen) == (12.5, 4096)
