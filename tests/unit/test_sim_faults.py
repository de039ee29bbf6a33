"""The fault book every simulator shares: which request a fault hits, how often, what is kept."""

from __future__ import annotations

from bot.sim.alltoken.faults import Fault
from bot.sim.faults import FaultBook, retry_after_text
from bot.sim.openclaw_token.faults import OpenClawFault
from bot.sim.openmarlin.faults import OpenMarlinFault


def test_prefix_faults_hit_in_order_and_are_pruned_when_spent() -> None:
    book: FaultBook[Fault] = FaultBook()
    first = book.append(Fault(method="get", path="/v1/images/", times=2))
    second = book.append(Fault(path="/v1/", times=None))
    assert book.take("POST", "/v1/images/x") is second  # wrong method for the first
    assert book.take("GET", "/v1/images/x") is first
    assert book.take("GET", "/v1/images/y") is first and first.hits == 2
    assert book.active() == [second] and len(book) == 1  # the spent one is gone
    assert book.take("GET", "/v2/") is None
    for _ in range(5):
        assert book.take("GET", "/v1/models") is second  # times=None: forever
    assert second.hits == 6 and book.clear() == 1 and book.take("GET", "/v1/") is None


def test_a_book_may_keep_spent_faults_and_count_them_when_cleared() -> None:
    book: FaultBook[OpenMarlinFault] = FaultBook(prune_spent=False)
    fault = book.append(OpenMarlinFault(method="GET", path="/v1/balance"))
    assert book.take("GET", "/v1/balance") is fault
    assert book.take("GET", "/v1/balance") is None  # one use only
    assert book.active() == [] and book.clear() == 1


def test_exact_faults_ignore_longer_paths() -> None:
    book: FaultBook[OpenClawFault] = FaultBook(match="exact")
    fault = book.append(OpenClawFault("GET", "/credits", 503, "UNAVAILABLE", times=1))
    assert book.take("GET", "/credits/history") is None
    assert book.take("GET", "/credits") is fault and fault.hits == 1
    assert book.take("GET", "/credits") is None


def test_retry_after_prints_whole_seconds_as_integers() -> None:
    assert [retry_after_text(s) for s in (2.0, 0.25, 30)] == ["2", "0.25", "30"]
