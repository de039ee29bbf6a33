"""The one backend call helper (bot.core.http): what is retried, how long it waits, what is not.

Requests go through httpx.MockTransport (httpx's own in-process transport); waits are recorded
instead of slept, so every case is exact about how long the policy asked to wait.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.core.errors import BackendError, alltoken_error, openai_error, transport_error
from bot.core.http import (
    DEFAULT_RETRY,
    TRANSIENT_STATUSES,
    BackendCall,
    PollBackoff,
    RetryPolicy,
    is_resendable,
)

URL = "http://backend.test/v1/thing"
Answer = httpx.Response | Exception


class Script:
    """Answers the requests in order (an exception is raised as the transport's failure)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def call(
        self,
        http: httpx.AsyncClient,
        policy: RetryPolicy,
        final_codes: frozenset[str] = frozenset(),
    ) -> BackendCall:
        return BackendCall(
            "alltoken", http, alltoken_error, policy, final_codes=final_codes, sleep=self.sleep
        )


def error(status: int, code: str = "", retry_after: str | None = None) -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    body = {"error": {"code": code, "message": f"{code or status} happened"}} if code else {}
    return httpx.Response(status, json=body, headers=headers)


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


PATIENT = RetryPolicy(max_retries_on_429=1, max_retries=2, backoff_s=0.5)


async def run(
    script: Script,
    policy: RetryPolicy,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    *,
    final_codes: frozenset[str] = frozenset(),
    accept: frozenset[int] = frozenset(),
) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.MockTransport(script.handler)) as http:
        call = script.call(http, policy, final_codes)
        return await call.send(method, URL, headers=headers, accept=accept)


async def failure(
    script: Script,
    policy: RetryPolicy,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    *,
    final_codes: frozenset[str] = frozenset(),
) -> BackendError:
    with pytest.raises(BackendError) as info:
        await run(script, policy, method, headers, final_codes=final_codes)
    return info.value


# --- 429 -------------------------------------------------------------------------------------


async def test_a_429_waits_its_retry_after_and_is_tried_once_more() -> None:
    script = Script(error(429, "rate_limited", "3"), ok())
    response = await run(script, DEFAULT_RETRY)
    assert response.json() == {"ok": True}
    assert len(script.requests) == 2 and script.waits == [3.0]


async def test_a_429_without_retry_after_waits_the_default() -> None:
    script = Script(error(429), ok())
    await run(script, RetryPolicy(default_wait_s=0.25))
    assert script.waits == [0.25]


async def test_a_second_429_is_reported_with_its_retry_after() -> None:
    script = Script(error(429, "rate_limited", "1"), error(429, "rate_limited", "2"))
    err = await failure(script, DEFAULT_RETRY)
    assert (err.status, err.code, err.retry_after) == (429, "rate_limited", 2.0)
    assert len(script.requests) == 2 and script.waits == [1.0]


async def test_a_retry_after_beyond_the_cap_is_reported_not_waited() -> None:
    script = Script(error(429, "rate_limited", "120"), ok())
    err = await failure(script, RetryPolicy(max_wait_s=30.0))
    assert err.retry_after == 120.0 and script.waits == [] and len(script.requests) == 1


async def test_a_429_on_a_paid_post_is_resent_because_nothing_started() -> None:
    script = Script(error(429, "rate_limited", "0"), ok())
    await run(script, DEFAULT_RETRY, "POST")
    assert [r.method for r in script.requests] == ["POST", "POST"]


async def test_a_final_code_is_never_resent() -> None:
    script = Script(error(429, "CREDIT_LIMIT_EXCEEDED", "1"), ok())
    err = await failure(script, PATIENT, final_codes=frozenset({"CREDIT_LIMIT_EXCEEDED"}))
    assert err.code == "CREDIT_LIMIT_EXCEEDED" and len(script.requests) == 1


# --- 5xx and transport errors ---------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_transient_status_of_a_get_backs_off_exponentially(status: int) -> None:
    script = Script(error(status), error(status), ok())
    await run(script, PATIENT)
    assert len(script.requests) == 3 and script.waits == [0.5, 1.0]


async def test_transient_retries_run_out() -> None:
    script = Script(error(503, "service_unavailable"), error(503), error(503, "last"))
    err = await failure(script, PATIENT)
    assert (err.status, err.code) == (503, "last") and len(script.requests) == 3


async def test_a_503_retry_after_longer_than_the_backoff_is_honoured() -> None:
    script = Script(error(503, retry_after="4"), ok())
    await run(script, PATIENT)
    assert script.waits == [4.0]


async def test_a_transport_error_of_a_get_is_retried() -> None:
    script = Script(httpx.ConnectError("refused"), ok())
    await run(script, PATIENT)
    assert len(script.requests) == 2 and script.waits == [0.5]


async def test_a_transport_error_that_persists_is_a_status_0_backend_error() -> None:
    script = Script(*(httpx.ReadTimeout("slow") for _ in range(3)))
    err = await failure(script, PATIENT)
    assert (err.backend, err.status, err.code) == ("alltoken", 0, "timeout")
    assert len(script.requests) == 3


async def test_a_post_without_an_idempotency_key_is_sent_once() -> None:
    for answer in (error(503), httpx.ConnectError("refused")):
        script = Script(answer, ok())
        err = await failure(script, PATIENT, "POST")
        assert err.status in (503, 0) and len(script.requests) == 1 and script.waits == []


async def test_a_post_with_an_idempotency_key_is_resent() -> None:
    script = Script(error(502), ok())
    await run(script, PATIENT, "POST", headers={"Idempotency-Key": "abc"})
    assert len(script.requests) == 2
    assert script.requests[1].headers["idempotency-key"] == "abc"


async def test_a_delete_is_sent_once() -> None:
    script = Script(error(503), ok())
    await failure(script, PATIENT, "DELETE")
    assert len(script.requests) == 1


async def test_the_default_policy_resends_no_5xx() -> None:
    script = Script(error(503), ok())
    err = await failure(script, DEFAULT_RETRY)
    assert err.status == 503 and len(script.requests) == 1


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request"), (401, "invalid_api_key")])
async def test_client_errors_are_never_retried(status: int, code: str) -> None:
    script = Script(error(status), ok())
    err = await failure(script, PATIENT, headers={"Idempotency-Key": "abc"})
    assert (err.status, err.code) == (status, code) and len(script.requests) == 1


async def test_an_accepted_error_status_is_returned() -> None:
    script = Script(error(400, "authorization_pending"))
    response = await run(script, PATIENT, "POST", accept=frozenset({400}))
    assert response.status_code == 400


def test_resendable_requests() -> None:
    assert is_resendable("get") and is_resendable("PUT") and is_resendable("PATCH")
    assert not is_resendable("POST") and not is_resendable("DELETE")
    assert is_resendable("POST", {"idempotency-key": "k"})


# --- streams ---------------------------------------------------------------------------------


class _Body(httpx.AsyncByteStream):
    """A body that sends `chunks`, then fails the connection when `then` is given."""

    def __init__(self, chunks: list[bytes], then: Exception | None = None) -> None:
        self.chunks = chunks
        self.then = then

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.then is not None:
            raise self.then


async def read_stream(
    script: Script, policy: RetryPolicy, method: str = "POST"
) -> tuple[list[bytes], BackendError | None]:
    got: list[bytes] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(script.handler)) as http:
        try:
            async with script.call(http, policy).stream(method, URL, json={"q": 1}) as response:
                async for chunk in response.aiter_raw():
                    got.append(chunk)
        except BackendError as exc:
            return got, exc
    return got, None


async def test_a_stream_refused_with_429_is_opened_again() -> None:
    script = Script(
        error(429, "rate_limited", "1"), httpx.Response(200, stream=_Body([b"a", b"b"]))
    )
    got, err = await read_stream(script, DEFAULT_RETRY)
    assert err is None and got == [b"a", b"b"] and script.waits == [1.0]
    assert json.loads(script.requests[1].content) == {"q": 1}


async def test_a_stream_post_failing_with_503_is_not_opened_again() -> None:
    script = Script(error(503, "all_providers_failed"), ok())
    _, err = await read_stream(script, PATIENT)
    assert err is not None and err.code == "all_providers_failed" and len(script.requests) == 1


async def test_a_stream_dropped_mid_body_is_a_backend_error_and_not_resent() -> None:
    body = _Body([b"data: x\n"], then=httpx.ReadError("reset"))
    script = Script(httpx.Response(200, stream=body), ok())
    got, err = await read_stream(script, PATIENT, method="GET")
    assert got == [b"data: x\n"]
    assert err is not None and (err.status, err.code) == (0, "connection_error")
    assert len(script.requests) == 1


# --- the pieces ------------------------------------------------------------------------------


def test_one_set_of_transient_statuses() -> None:
    assert frozenset({0, 429, 500, 502, 503, 504}) == TRANSIENT_STATUSES
    assert 400 not in TRANSIENT_STATUSES and 401 not in TRANSIENT_STATUSES


def test_poll_backoff() -> None:
    poll = PollBackoff(base_s=2.0, cap_s=15.0, max_errors=2)
    busy = BackendError("alltoken", 503, "busy", "busy")
    assert poll.wait_after(busy, 1) == 2.0 and poll.wait_after(busy, 2) == 4.0
    assert poll.wait_after(busy, 3) is None  # out of patience
    hinted = BackendError("alltoken", 429, "rate_limited", "slow", retry_after=60)
    assert poll.wait_after(hinted, 1) == 15.0  # Retry-After, capped
    assert poll.wait_after(BackendError("alltoken", 401, "invalid_api_key", "no"), 1) is None


def test_the_openai_envelope_is_attributed_to_the_backend_that_answered() -> None:
    request = httpx.Request("POST", URL)
    body = b'{"error": {"code": "KEY_REVOKED", "message": "revoked"}}'
    err = openai_error("openclaw_token", httpx.Response(401, content=body, request=request))
    assert (err.backend, err.status, err.code, err.message) == (
        "openclaw_token",
        401,
        "KEY_REVOKED",
        "revoked",
    )


def test_transport_errors_name_who_failed() -> None:
    def label(exc: Exception) -> str:
        return transport_error("openclaw_token", exc, "the OpenClaw Token proxy").message

    assert label(httpx.ReadTimeout("x")) == "the OpenClaw Token proxy did not answer in time"
    assert label(httpx.ConnectError("x")).startswith("could not reach the OpenClaw Token proxy")
    assert transport_error("alltoken", httpx.ReadTimeout("x")).message == (
        "alltoken did not answer in time"
    )
