"""A first listing answers at once with what is probed so far and how far the scan is.

Three real venvs whose interpreters take seconds to start make the first scan slow;
``?partial=true`` and ``GET /gpuenv/api/progress`` are read while it runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.server_config import server_config
from tests.support.slow_work import slow_venv

SLOW_SECONDS = (2, 4, 6)


@pytest.fixture
def venvs_dir(tmp_path: Path) -> Path:
    for index, seconds in enumerate(SLOW_SECONDS):
        slow_venv(tmp_path / "slow" / f"slow{index}", seconds)
    return tmp_path / "slow"


@pytest.fixture
def jp_server_config(venvs_dir):
    return server_config(venv_dirs=[str(venvs_dir)])


async def get_json(jp_fetch, *path: str, **query: str) -> dict[str, Any]:
    return json.loads((await jp_fetch(*path, params=query)).body)


async def test_a_first_listing_shows_progress_and_environments_as_probed(jp_fetch) -> None:
    total = len(SLOW_SECONDS)
    answers = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        began = time.monotonic()
        listing = await get_json(jp_fetch, "gpuenv", "api", "environments", partial="true")
        # Never waits for the scan (each probe alone takes seconds).
        assert time.monotonic() - began < 1.5
        answers.append(listing)
        if listing["complete"]:
            break
        progress = await get_json(jp_fetch, "gpuenv", "api", "progress")
        assert progress["listing"]["state"] in ("discovering", "probing")
        await asyncio.sleep(0.1)
    partial = [a for a in answers if not a["complete"]]
    probing = [a["scan"] for a in partial if a["scan"]["state"] == "probing"]
    assert probing, answers
    assert probing[0]["probed"] == 0 and probing[0]["total"] == total
    assert probing[0]["message"] == f"probing 0 of {total} environments"
    counts = [scan["probed"] for scan in probing]
    assert counts == sorted(counts) and len(set(counts)) >= 2, counts
    # Environments appear as they are probed, each with its probe's facts.
    for answer in partial:
        assert len(answer["environments"]) == (
            answer["scan"]["probed"] if answer["scan"]["state"] == "probing" else 0
        )
        assert all(env["python_version"] for env in answer["environments"])
        assert answer["problems"] == []
    assert [e["name"] for e in partial[-1]["environments"]] == [
        f"slow{i}" for i in range(len(partial[-1]["environments"]))
    ]
    final = answers[-1]
    assert final["complete"] is True
    assert sorted(env["name"] for env in final["environments"]) == ["slow0", "slow1", "slow2"]
    assert final["scan"]["state"] == "idle"
    assert (final["scan"]["probed"], final["scan"]["total"]) == (total, total)
    # The published listing is what the plain request answers.
    plain = await get_json(jp_fetch, "gpuenv", "api", "environments")
    assert plain["environments"] == final["environments"]
    assert set(plain) == {"environments", "problems"} and plain["problems"] == []
