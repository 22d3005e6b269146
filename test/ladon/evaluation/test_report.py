"""``ladon eval`` outputs: the equal-bytes comparison and its Markdown table."""

from __future__ import annotations

import pytest

from ladon.evaluation.report import equal_rate_comparison, markdown_table


def test_equal_rate_comparison_interpolates_in_log_kb() -> None:
    def row(method, label, kb, top1):
        return {"method": method, "label": label, "random_weights": False,
                "classification": {"payload_kb": kb, "top1": top1, "top5": top1, "bpp": 0.1}}
    document = {"datasets": {"classification": {"spec": {}, "images": 3}},
                "rows": [row("ladon", "beta=1", 2.0, 0.9), row("ladon", "beta=9", 0.5, 0.7),
                         row("jpeg", "q10", 1.0, 0.4), row("jpeg", "q50", 4.0, 0.8)]}
    first, second = equal_rate_comparison(document)
    assert first["jpeg"] == pytest.approx(0.6)  # 2 KB is halfway between 1 and 4 KB in log scale
    assert first["jpeg_range_kb"] == [1.0, 4.0] and "webp" not in first
    assert second["jpeg"] is None  # below the lowest measured JPEG rate
    document["equal_rate"] = [first, second]
    text = markdown_table(document)
    assert "| beta=1 | classification | top1 | 2.000 | 90.00 | 60.00 | – |" in text
    assert "outside 1.00–4.00 KB" in text
