"""The clip library under real concurrent use with kill -9s (the short version of the soak).

The app (an equivalent process making the same core calls), the CLI, the trainer and the
fine-tune workers the app starts all use one library while a killer sends SIGKILL to each
kind at least once; then ``PRAGMA integrity_check`` must be ok and every write a process
acknowledged must be in the file. tests/data/soak_library.py holds the driver; the long run and its
figures: docs/reliability.md.
"""

from __future__ import annotations

import pytest
from soak_library import run_soak


@pytest.mark.slow
def test_library_shared_by_app_cli_trainer_and_workers_with_kills(tmp_path):
    res = run_soak(tmp_path / "soak", seconds=20, seed=3,
                   quotas={"app": 2, "worker": 1, "trainer": 1, "cli": 1}, max_seconds=900)
    assert res["failures"] == [], "\n".join(res["failures"])
    assert res["integrity_check"] == "ok"
    checked = res["acknowledged_checked"]
    # the app's writes of every kind, the CLI's annotations and a fine-tune run were checked
    for kind in ("annotation", "prediction", "run", "cli annotation"):
        assert checked.get(kind, 0) > 0, (kind, res)
    for kind in ("app", "worker", "trainer", "cli"):
        assert res["kills"].get(kind, 0) >= 1, res
