"""settle_heap freezes what startup built and sets the youngest generation's threshold; new
garbage is still collected. Run in a child interpreter: the collector is process-wide state
this test process must keep as it is."""

from __future__ import annotations

import json
import subprocess
import sys

from bot.core.settings import Settings

_PROBE = """
import gc, json, sys
from bot.core.heap import settle_heap
freeze, gen0 = sys.argv[1] == "1", int(sys.argv[2])
before = gc.get_threshold()
frozen = settle_heap(freeze, gen0)

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: only the collector frees it
del a, b
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": frozen,
                  "count": gc.get_freeze_count(), "freed": gc.collect()}))
"""


def _probe(freeze: bool, gen0: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "1" if freeze else "0", str(gen0)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def test_startup_objects_are_frozen_and_new_cycles_still_collected() -> None:
    got = _probe(True, 50_000)
    assert got["after"] == [50_000, *got["before"][1:]]  # type: ignore[index]
    assert got["frozen"] == got["count"]
    assert isinstance(got["frozen"], int) and got["frozen"] > 1_000
    assert isinstance(got["freed"], int) and got["freed"] >= 2


def test_off_leaves_the_collector_as_python_sets_it() -> None:
    got = _probe(False, 0)
    assert got["after"] == got["before"]
    assert got["frozen"] == 0 and got["count"] == 0


def test_the_defaults_freeze_and_raise_the_threshold(tmp_path: object) -> None:
    settings = Settings()
    assert settings.gc_freeze is True
    assert settings.gc_gen0_threshold == 200_000
