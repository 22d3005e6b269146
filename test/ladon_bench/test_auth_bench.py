"""``python -m ladon_bench.auth_bench`` at test scale: it writes both tables and the overhead is the trailer."""

from __future__ import annotations

import json

from ladon_bench import auth_bench


def test_auth_bench_writes_its_tables(tmp_path):
    assert auth_bench.main(["--repeats", "5", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "auth_bench.json").read_text())
    assert len(report["rows"]) == 3
    for row in report["rows"]:
        assert row["overhead_bytes"] == 1 + len("robot1") + 32 == row["bytes_signed"] - row["bytes_plain"]
        assert row["sign_us"] > 0 and row["verify_bytes_us"] > 0
    assert "| demo model packet" in (tmp_path / "auth_bench.md").read_text()
    assert auth_bench.main(["--repeats", "5", "--out", str(tmp_path)]) == 2  # no silent overwrite
