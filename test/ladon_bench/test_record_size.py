"""ladon_bench.record_size writes its JSON and Markdown table, and the sizes are ordered as measured (no timing)."""

from __future__ import annotations

import json

from ladon_bench import record_size


def test_record_size_writes_json_and_md(tmp_path) -> None:
    assert record_size.main(["--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "record_size.json").read_text())
    assert "| Ladon features, beta 1.28" in (tmp_path / "record_size.md").read_text()
    for set_name in record_size.SETS:
        rows = {r["recorded"].split(" (")[0].split(" sensor_msgs")[0]: r for r in result["rows"]
                if r["set"] == set_name}
        size = {name: r["marginal_bytes_per_frame_zstd"] for name, r in rows.items()}
        assert size["Ladon features, beta 10.24"] < size["Ladon features, beta 1.28"] < size["JPEG q75"] \
            < size["JPEG q95"] < size["raw"]
        for r in rows.values():  # a bag never costs less per frame than the messages it holds, uncompressed
            assert r["marginal_bytes_per_frame_none"] >= r["message_bytes_mean"]
