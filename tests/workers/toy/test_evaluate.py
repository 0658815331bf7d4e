"""The toy model's report runs on any trained folder, through diffusers' own pipeline, and measures
every probe (a folder trained for one step stands in: the figures are checked for shape, not value)."""

import math

from workers.toy.evaluate import BUCKETS, PROBES, evaluate
from workers.toy.train import TrainConfig, train_toy


def test_the_report_measures_every_probe_and_clip(tmp_path):
    folder = train_toy(tmp_path / "toy", TrainConfig.short(1), log=lambda line: None).folder
    report = evaluate(folder, steps=2, frames_png=tmp_path / "frames.png")
    assert [r["probe"] for r in report["reconstruction"]] == [f"{c} {s}" for s, c in PROBES]
    assert all(math.isfinite(r["psnr_db"]) and len(r["background_rgb"]) == 3 for r in report["reconstruction"])
    assert all(math.isfinite(r["background_spread"]) for r in report["reconstruction"])
    assert [m["motion_bucket_id"] for m in report["motion"]] == list(BUCKETS)
    assert all(math.isfinite(m["frame0_psnr_db"]) for m in report["motion"])
    assert len(report["colour"]) == len(PROBES) - 1
    assert (tmp_path / "frames.png").stat().st_size > 0
