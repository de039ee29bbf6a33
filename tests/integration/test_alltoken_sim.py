"""The AllToken simulator over real HTTP: the backends.md contract, faults and control API."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import httpx
import pytest
from alltoken import AllToken
from alltoken.generated.chat import (
    ChatCompletionResponse,
    ErrorResponse,
    ImageCreateResponse,
    ImageGenerationResponse,
    ImageTaskStatusResponse,
    ModelList,
    VideoListResponse,
    VideoTaskResponse,
)
from PIL import Image

from bot.backends.alltoken import catalog
from bot.sim.alltoken.models import PRICE_FIELD_STYLE, SIM_CHAT_MODELS
from bot.sim.alltoken.server import AllTokenSim, AllTokenSimConfig, Fault
from bot.sim.png import PNG_SIGNATURE

DEMO_KEY = "sk-at-demo-0000000000000000000000"
CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
VIDEOS = "/v1/videos/generations"


class ManualClock:
    """A clock tests move by hand, so expiry windows need no real waiting."""

    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SimFactory = Callable[..., Awaitable[AllTokenSim]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    started: list[AllTokenSim] = []

    async def make(clock: ManualClock | None = None, **overrides: Any) -> AllTokenSim:
        settings: dict[str, Any] = {
            "image_seconds": 0.1,
            "video_seconds": 0.1,
            "tokens_per_second": 0,
            "image_pixels": 64,  # pictures are drawn at the requested size, scaled to this
            **overrides,
        }
        sim = AllTokenSim(AllTokenSimConfig(**settings), clock=clock)
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(make_sim: SimFactory) -> AllTokenSim:
    return await make_sim()


def _client(sim: AllTokenSim, key: str | None = DEMO_KEY) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=10)


@pytest.fixture
async def client(sim: AllTokenSim) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(sim) as c:
        yield c


def chat_body(prompt: str, model: str = "gpt-5.4-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


def parse_sse(text: str) -> tuple[list[Any], list[str], list[str]]:
    """(data payloads with [DONE] kept as a string, comment lines, every non-blank line)."""
    data: list[Any] = []
    comments: list[str] = []
    lines = [line for line in text.split("\n") if line.strip()]
    for line in lines:
        if line.startswith(":"):
            comments.append(line)
        elif line.startswith("data: "):
            raw = line[len("data: ") :]
            data.append(raw if raw == "[DONE]" else json.loads(raw))
    return data, comments, lines


def assert_envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    ErrorResponse.model_validate(body)
    err = body["error"]
    assert set(err) >= {"code", "type", "message", "param", "request_id"}
    assert err["code"] == code
    assert err["request_id"].startswith("req_")
    assert resp.headers["x-request-id"] == err["request_id"]
    return err


# ---- auth ------------------------------------------------------------------------------------


async def test_missing_and_unknown_keys_get_401(sim: AllTokenSim) -> None:
    async with _client(sim, key=None) as anon, _client(sim, key="sk-at-nope") as bad:
        err = assert_envelope(await anon.post(CHAT, json=chat_body("hi")), 401, "invalid_api_key")
        assert err["type"] == "auth_error"
        assert_envelope(await bad.get("/v1/models"), 401, "invalid_api_key")
        assert_envelope(await bad.get(f"{IMAGES}/igen_x"), 401, "invalid_api_key")


async def test_account_user_endpoints_refuse_api_keys(client: httpx.AsyncClient) -> None:
    for path in ("/api-account/user/balance", "/api-account/user/usage"):
        err = assert_envelope(await client.get(path), 401, "invalid_token")
        assert err["type"] == "auth_error"


# ---- chat --------------------------------------------------------------------------------------


def _check_cost_line(comment: str, in_per_1k: str, out_per_1k: str) -> dict[str, Any]:
    payload = json.loads(comment[1:].strip())
    assert set(payload) == {
        "cost",
        "input_price",
        "output_price",
        "prompt_tokens",
        "completion_tokens",
    }
    assert payload["input_price"] == in_per_1k
    assert payload["output_price"] == out_per_1k
    expected = Decimal(payload["prompt_tokens"]) / 1000 * Decimal(in_per_1k) + Decimal(
        payload["completion_tokens"]
    ) / 1000 * Decimal(out_per_1k)
    assert Decimal(payload["cost"]) == expected
    assert len(payload["cost"].split(".")[1]) == 10
    return payload


async def test_stream_without_usage_ends_with_done_then_one_cost_line(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(CHAT, json=chat_body("tell me about tea", stream=True))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"].startswith("req_")
    data, comments, lines = parse_sse(resp.text)
    assert data[-1] == "[DONE]"
    assert len(comments) == 1 and lines[-1] == comments[0] and lines[-2] == "data: [DONE]"
    chunks = data[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    # Without include_usage the usage field is null on every chunk, not absent.
    assert all("usage" in c and c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "**" in text and "`" in text
    cost = _check_cost_line(comments[0], "0.0002000000", "0.0012500000")
    assert cost["completion_tokens"] == len(text.split())

    # Streaming and non-streaming answers are the same deterministic text.
    plain = await client.post(CHAT, json=chat_body("tell me about tea"))
    assert plain.json()["choices"][0]["message"]["content"] == text


async def test_stream_with_include_usage_adds_usage_chunk(client: httpx.AsyncClient) -> None:
    body = chat_body("[[tokens=30]] go", "claude-haiku-4-5", stream=True)
    body["stream_options"] = {"include_usage": True}
    resp = await client.post(CHAT, json=body)
    data, comments, _ = parse_sse(resp.text)
    assert data[-1] == "[DONE]"
    usage_chunk = data[-2]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == 30
    assert usage["total_tokens"] == usage["prompt_tokens"] + 30
    assert all(c["usage"] is None for c in data[:-2])
    assert len(comments) == 1
    cost = _check_cost_line(comments[0], "0.0010000000", "0.0050000000")
    assert (cost["prompt_tokens"], cost["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )


async def test_non_streaming_shape_and_markers(client: httpx.AsyncClient) -> None:
    resp = await client.post(CHAT, json=chat_body("write it [[tokens=150]]"))
    body = resp.json()
    parsed = ChatCompletionResponse.model_validate(body)
    assert parsed.x_gateway_request_id == resp.headers["x-request-id"]
    content = body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 150 == len(content.split())
    assert "```python" in content and content.count("\n\n") >= 2

    short = (await client.post(CHAT, json=chat_body("write it [[tokens=40]]"))).json()
    assert "```" not in short["choices"][0]["message"]["content"]

    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "hello Ada"},
        {"role": "user", "content": "[[echo-context]] who am I?"},
    ]
    echo = await client.post(CHAT, json={"model": "glm-5.1", "messages": messages})
    text = echo.json()["choices"][0]["message"]["content"]
    assert "received 4 messages" in text and "my name is Ada" in text


async def test_max_tokens_truncates_with_length(client: httpx.AsyncClient) -> None:
    body = (await client.post(CHAT, json=chat_body("[[tokens=50]]", max_tokens=10))).json()
    assert body["usage"]["completion_tokens"] == 10
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("model", ["gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex"])
async def test_search_on_openai_models_fails(client: httpx.AsyncClient, model: str) -> None:
    resp = await client.post(CHAT, json=chat_body("news?", model, enable_search=True))
    assert assert_envelope(resp, 503, "all_providers_failed")["type"] == "api_error"


@pytest.mark.parametrize(
    "model",
    ["claude-sonnet-4-6", "glm-5.1", "kimi-k2.6", "minimax-m2.7", "gemini-3-flash-preview"],
)
async def test_search_silently_ignored(client: httpx.AsyncClient, model: str) -> None:
    resp = await client.post(CHAT, json=chat_body("news?", model, enable_search=True))
    text = resp.json()["choices"][0]["message"]["content"]
    assert "no live web access" in text and "Searched the web" not in text


@pytest.mark.parametrize("model", ["deepseek-v4-pro", "qwen3.6-flash", "qwen3.6-plus"])
async def test_search_honoured_by_deepseek_and_qwen(client: httpx.AsyncClient, model: str) -> None:
    resp = await client.post(CHAT, json=chat_body("latest rust release", model, enable_search=True))
    text = resp.json()["choices"][0]["message"]["content"]
    assert text.startswith("Searched the web (20")
    assert text.count("https://example.com/") == 2
    plain = await client.post(CHAT, json=chat_body("latest rust release", model))
    assert "Searched the web" not in plain.json()["choices"][0]["message"]["content"]


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    err = assert_envelope(
        await client.post(CHAT, json=chat_body("hi", "gpt-9")), 404, "model_not_found"
    )
    assert err["param"] == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"model": "gpt-5.4-mini", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        ({**chat_body("x"), "temperature": 5}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-5.4-mini", "messages": []}, "messages"),
    ],
)
async def test_invalid_chat_bodies_are_400(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    err = assert_envelope(await client.post(CHAT, json=body), 400, "invalid_request")
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param


async def test_non_json_body_is_400(client: httpx.AsyncClient) -> None:
    resp = await client.post(CHAT, content=b"{nope", headers={"Content-Type": "application/json"})
    assert_envelope(resp, 400, "invalid_request")


async def test_stream_pacing_and_latency(make_sim: SimFactory) -> None:
    sim = await make_sim(tokens_per_second=100, latency_ms=150)
    async with _client(sim) as c:
        started = time.perf_counter()
        async with c.stream("POST", CHAT, json=chat_body("[[tokens=30]]", stream=True)) as resp:
            first_byte_at = None
            async for _ in resp.aiter_bytes():
                first_byte_at = first_byte_at or time.perf_counter()
        total = time.perf_counter() - started
    assert first_byte_at is not None and first_byte_at - started >= 0.14
    assert total >= 0.15 + 0.28  # 30 tokens at 100/s after the latency


async def test_many_concurrent_streams(make_sim: SimFactory) -> None:
    sim = await make_sim(tokens_per_second=20)
    # aiohttp's client here: httpx's pool spends seconds of client-side CPU on 500 parallel
    # connections, which would measure httpx rather than the simulator.
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"Authorization": f"Bearer {DEMO_KEY}"}
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def one(i: int) -> None:
            body = chat_body(f"[[tokens=10]] #{i}", stream=True)
            async with session.post(sim.base_url + CHAT, json=body) as resp:
                data, comments, _ = parse_sse(await resp.text())
            assert data[-1] == "[DONE]" and len(comments) == 1
            assert len(data) == 10 + 3  # role, 10 tokens, finish, [DONE]

        await asyncio.gather(*(one(i) for i in range(500)))
    assert sim.stats.chat_streams == 500 and sim.stats.active_streams == 0
    assert sim.stats.max_active_streams >= 250  # they really overlapped (not one by one)


async def test_official_sdk_reads_the_sim(sim: AllTokenSim) -> None:
    def use_sdk() -> tuple[str, list[Any]]:
        client = AllToken(api_key=DEMO_KEY, base_url=sim.base_url)
        plain = client.openai.chat.completions.create(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
        )
        stream = client.openai.chat.completions.create(
            model="claude-sonnet-4-6",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return plain.choices[0].message.content or "", list(stream)

    text, chunks = await asyncio.to_thread(use_sdk)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(text.split())


# ---- balance -----------------------------------------------------------------------------------


async def test_balance_is_charged_and_402_when_exhausted(sim: AllTokenSim) -> None:
    key = sim.issue_key(1.0)
    async with _client(sim, key) as c:
        resp = await c.post(CHAT, json=chat_body("[[tokens=100]]", stream=True))
        _, comments, _ = parse_sse(resp.text)
        cost = Decimal(json.loads(comments[0][1:])["cost"])
        assert Decimal(str(sim.balance(key))) == Decimal("1.0") - cost

    broke = sim.issue_key(0.0)
    async with _client(sim, broke) as c:
        assert_envelope(await c.post(CHAT, json=chat_body("hi")), 402, "insufficient_balance")

    poor = sim.issue_key(0.05)
    async with _client(sim, poor) as c:
        body = {"model": "gpt-image-2", "prompt": "x", "quality": "high"}
        assert_envelope(await c.post(f"{IMAGES}/async", json=body), 402, "insufficient_balance")
        assert sim.balance(poor) == 0.05


# ---- images ----------------------------------------------------------------------------------


async def test_image_lifecycle_b64_once_then_r2(make_sim: SimFactory) -> None:
    """The r2_copy switch (the SDK's newer spec): b64 once, then the R2 copy's URL."""
    sim = await make_sim(r2_copy=True)
    async with _client(sim) as client:
        await _check_image_lifecycle_with_r2(sim, client)


async def _check_image_lifecycle_with_r2(sim: AllTokenSim, client: httpx.AsyncClient) -> None:
    resp = await client.post(f"{IMAGES}/async", json={"model": "gpt-image-2", "prompt": "a fox"})
    assert resp.status_code == 202
    created = ImageCreateResponse.model_validate(resp.json())
    task_id = created.id
    assert task_id.startswith("igen_") and resp.json()["status"] == "queued"

    pending = await client.get(f"{IMAGES}/{task_id}")
    assert pending.status_code == 200
    ImageTaskStatusResponse.model_validate(pending.json())
    assert pending.json()["status"] in ("queued", "processing")
    assert pending.json()["next_poll_after_ms"] == 500
    assert pending.headers["Retry-After"] == "1"

    await asyncio.sleep(0.15)
    first = await client.get(f"{IMAGES}/{task_id}")
    body = first.json()
    ImageGenerationResponse.model_validate(body)
    assert body["status"] == "completed" and body["output_format"] == "png"
    item = body["data"][0]
    png = base64.b64decode(item["b64_json"])
    assert png.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(png)).size == (64, 64)  # auto = 1024x1024, scaled to the cap
    assert item["mime_type"] == "image/png" and item["r2_url"].startswith(sim.base_url)
    assert set(body["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    assert sim.stats.b64_deliveries[task_id] == 1

    for _ in range(2):
        again = await client.get(f"{IMAGES}/{task_id}")
        assert again.status_code == 200
        item2 = again.json()["data"][0]
        assert "b64_json" not in item2 and item2["r2_url"]
    assert sim.stats.b64_deliveries[task_id] == 1
    assert sim.stats.requests_to("GET", "/v1/images/generations/{id}") == 4

    async with httpx.AsyncClient() as anon:
        download = await anon.get(item["r2_url"])
        assert download.status_code == 200 and download.content == png
        assert download.headers["content-type"] == "image/png"
        tampered = item["r2_url"][:-4] + ("0000" if not item["r2_url"].endswith("0000") else "1111")
        assert (await anon.get(tampered)).status_code == 403


async def test_legacy_image_alias_and_other_keys(
    sim: AllTokenSim, client: httpx.AsyncClient
) -> None:
    resp = await client.post(IMAGES, json={"model": "wan2.7-image", "prompt": "a boat", "n": 2})
    assert resp.status_code == 202
    task_id = resp.json()["id"]
    async with _client(sim, sim.issue_key(5)) as other:
        assert_envelope(await other.get(f"{IMAGES}/{task_id}"), 404, "task_not_found")
    assert_envelope(await client.get(f"{IMAGES}/igen_missing"), 404, "task_not_found")
    await asyncio.sleep(0.15)
    body = (await client.get(f"{IMAGES}/{task_id}")).json()
    assert len(body["data"]) == 2 and body["data"][0]["revised_prompt"] is None


async def test_image_is_gone_after_the_first_read_by_default(make_sim: SimFactory) -> None:
    """The seed's live-verified behaviour (2026-05-12): re-polling answers 410."""
    sim = await make_sim(image_seconds=0.05)
    assert sim.config.r2_copy is False
    async with _client(sim) as c:
        task_id = (
            await c.post(f"{IMAGES}/async", json={"model": "gpt-image-2", "prompt": "x"})
        ).json()["id"]
        await asyncio.sleep(0.1)
        item = (await c.get(f"{IMAGES}/{task_id}")).json()["data"][0]
        assert base64.b64decode(item["b64_json"]).startswith(PNG_SIGNATURE)
        assert "r2_url" not in item
        for _ in range(2):
            gone = assert_envelope(
                await c.get(f"{IMAGES}/{task_id}"), 410, "image_already_retrieved"
            )
            assert gone["type"] == "invalid_request_error"
        assert sim.stats.b64_deliveries[task_id] == 1


async def test_image_r2_copy_expires(make_sim: SimFactory) -> None:
    clock = ManualClock()
    sim = await make_sim(clock=clock, image_seconds=2, r2_ttl_s=30, r2_copy=True)
    async with _client(sim) as c:
        task_id = (
            await c.post(f"{IMAGES}/async", json={"model": "gpt-image-2", "prompt": "x"})
        ).json()["id"]
        clock.advance(0.1)
        assert (await c.get(f"{IMAGES}/{task_id}")).json()["status"] == "queued"
        clock.advance(1)
        assert (await c.get(f"{IMAGES}/{task_id}")).json()["status"] == "processing"
        clock.advance(1)
        first = (await c.get(f"{IMAGES}/{task_id}")).json()["data"][0]
        clock.advance(10)
        assert (await c.get(f"{IMAGES}/{task_id}")).status_code == 200
        async with httpx.AsyncClient() as anon:
            assert (await anon.get(first["r2_url"])).status_code == 200
            clock.advance(30)
            assert_envelope(await c.get(f"{IMAGES}/{task_id}"), 410, "image_expired")
            assert (await anon.get(first["r2_url"])).status_code == 403


async def test_image_idempotency_key(make_sim: SimFactory) -> None:
    clock = ManualClock()
    sim = await make_sim(clock=clock)
    body = {"model": "gpt-image-2", "prompt": "same"}
    headers = {"Idempotency-Key": "abc-123"}
    async with _client(sim) as c, _client(sim, sim.issue_key(5)) as other:
        first = (await c.post(f"{IMAGES}/async", json=body, headers=headers)).json()["id"]
        clock.advance(30)
        err = assert_envelope(
            await c.post(f"{IMAGES}/async", json=body, headers=headers), 409, "duplicate_request"
        )
        assert err["task_id"] == first
        # The key is scoped to the API key, and to 60 seconds.
        assert (await other.post(f"{IMAGES}/async", json=body, headers=headers)).status_code == 202
        clock.advance(31)
        again = await c.post(f"{IMAGES}/async", json=body, headers=headers)
        assert again.status_code == 202 and again.json()["id"] != first
    assert sim.stats.image_submissions == 3


async def test_image_failure_refunds(sim: AllTokenSim) -> None:
    key = sim.issue_key(1.0)
    async with _client(sim, key) as c:
        resp = await c.post(
            f"{IMAGES}/async", json={"model": "gpt-image-2", "prompt": "[[fail]] x"}
        )
        assert sim.balance(key) < 1.0
        await asyncio.sleep(0.15)
        body = (await c.get(f"{IMAGES}/{resp.json()['id']}")).json()
        ImageTaskStatusResponse.model_validate(body)
        assert body["status"] == "failed"
        assert body["error"]["code"] == "upstream_content_violation"
        assert sim.balance(key) == 1.0


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "gpt-image-2", "prompt": "x", "n": 11}, 400, "invalid_request", "n"),
        ({"model": "gpt-image-2", "prompt": "x" * 32_001}, 400, "invalid_request", "prompt"),
        (
            {"model": "gpt-image-2", "prompt": "x", "size": "999x999"},
            400,
            "invalid_request",
            "size",
        ),
        (
            {"model": "gpt-image-2", "prompt": "x", "quality": "ultra"},
            400,
            "invalid_request",
            "quality",
        ),
        ({"model": "dall-e-9", "prompt": "x"}, 404, "model_not_found", "model"),
    ],
)
async def test_image_validation(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str, param: str
) -> None:
    err = assert_envelope(await client.post(f"{IMAGES}/async", json=body), status, code)
    assert err["param"] == param


async def test_image_custom_size_accepted(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-image-2", "prompt": "x", "size": "2048x1152"}
    assert (await client.post(f"{IMAGES}/async", json=body)).status_code == 202


# ---- videos ----------------------------------------------------------------------------------


async def test_video_lifecycle_and_presigned_url(make_sim: SimFactory) -> None:
    clock = ManualClock()
    sim = await make_sim(clock=clock, video_seconds=10, video_url_ttl_s=60)
    async with _client(sim) as c, httpx.AsyncClient() as anon:
        body = {
            "model": "seedance-1.5-pro",
            "prompt": "waves",
            "duration": 6,
            "ratio": "9:16",
            "resolution": "720p",
            "return_last_frame": True,
        }
        resp = await c.post(VIDEOS, json=body)
        assert resp.status_code == 202
        # The submit reply is a whole VideoTaskResponse (is_expired, created_at, …).
        submitted = VideoTaskResponse.model_validate(resp.json())
        vid = submitted.id
        assert vid.startswith("vgen_") and submitted.status.value == "queued"
        assert submitted.is_expired is False and submitted.video_url is None
        assert (submitted.duration, submitted.ratio, submitted.model) == (
            6,
            "9:16",
            "seedance-1.5-pro",
        )

        pending = VideoTaskResponse.model_validate((await c.get(f"{VIDEOS}/{vid}")).json())
        assert pending.status.value == "queued" and pending.video_url is None
        clock.advance(5)
        assert (await c.get(f"{VIDEOS}/{vid}")).json()["status"] == "processing"
        clock.advance(5)
        done = (await c.get(f"{VIDEOS}/{vid}")).json()
        task = VideoTaskResponse.model_validate(done)
        assert task.status.value == "completed" and task.is_expired is False
        assert (task.duration, task.ratio, task.resolution, task.fps) == (6, "9:16", "720p", 24)
        assert task.video_url_ttl == 60 and done["video_url_expires_at"].endswith("Z")
        assert done["usage"]["total_tokens"] > 0 and done["last_frame_url"]

        video = await anon.get(done["video_url"])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"
        assert sim.stats.video_downloads[vid] == 1
        frame = await anon.get(done["last_frame_url"])
        assert frame.content.startswith(PNG_SIGNATURE)
        assert Image.open(io.BytesIO(frame.content)).size == (36, 64)  # 720x1280, scaled
        bad = done["video_url"].replace("sig=", "sig=00")
        assert (await anon.get(bad)).status_code == 403

        clock.advance(61)
        expired = (await c.get(f"{VIDEOS}/{vid}")).json()
        assert expired["status"] == "expired" and expired["is_expired"] is True
        assert expired["video_url_ttl"] == 0
        assert (await anon.get(done["video_url"])).status_code == 403


async def test_video_url_really_expires(make_sim: SimFactory) -> None:
    sim = await make_sim(video_seconds=0.05, video_url_ttl_s=0.2)
    async with _client(sim) as c, httpx.AsyncClient() as anon:
        vid = (await c.post(VIDEOS, json={"model": "seedance-2.0", "prompt": "x"})).json()["id"]
        await asyncio.sleep(0.1)
        done = (await c.get(f"{VIDEOS}/{vid}")).json()
        assert done["status"] == "completed"
        assert (await anon.get(done["video_url"])).status_code == 200
        # Presigned expiry is whole unix seconds (rounded up), like real presigned URLs.
        await asyncio.sleep(
            max(0.0, float(done["video_url"].split("expires=")[1].split("&")[0]) - time.time())
            + 0.05
        )
        assert (await anon.get(done["video_url"])).status_code == 403


async def test_video_cancel(make_sim: SimFactory) -> None:
    sim = await make_sim(video_seconds=30)
    key = sim.issue_key(5.0)
    async with _client(sim, key) as c, _client(sim) as other:
        vid = (await c.post(VIDEOS, json={"model": "seedance-1.5-pro", "prompt": "x"})).json()["id"]
        assert sim.balance(key) < 5.0
        assert_envelope(await other.post(f"{VIDEOS}/{vid}/cancel"), 404, "task_not_found")
        assert_envelope(await c.post(f"{VIDEOS}/vgen_nope/cancel"), 404, "task_not_found")
        cancelled = await c.post(f"{VIDEOS}/{vid}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert sim.balance(key) == 5.0
        assert_envelope(await c.post(f"{VIDEOS}/{vid}/cancel"), 409, "task_already_finished")

    fast = await _completed_video(await_sim=sim)
    async with _client(sim) as c:
        assert_envelope(await c.post(f"{VIDEOS}/{fast}/cancel"), 409, "task_already_finished")


async def _completed_video(await_sim: AllTokenSim) -> str:
    await_sim.config.video_seconds = 0.05
    async with _client(await_sim) as c:
        vid = (await c.post(VIDEOS, json={"model": "happyhorse-1.0-t2v", "prompt": "x"})).json()[
            "id"
        ]
        await asyncio.sleep(0.1)
        assert (await c.get(f"{VIDEOS}/{vid}")).json()["status"] == "completed"
    return str(vid)


async def test_video_failure(client: httpx.AsyncClient) -> None:
    vid = (await client.post(VIDEOS, json={"model": "seedance-2.0", "prompt": "[[fail]]"})).json()[
        "id"
    ]
    await asyncio.sleep(0.15)
    body = (await client.get(f"{VIDEOS}/{vid}")).json()
    assert body["status"] == "failed" and body["error"]["code"] == "upstream_content_violation"
    assert body["video_url"] is None


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "sora-3", "prompt": "x"}, 404, "upstream_model_not_found", "model"),
        (
            {"model": "seedance-1.5-pro", "prompt": "x", "ratio": "5:4"},
            400,
            "invalid_request",
            "ratio",
        ),
        (
            {"model": "seedance-1.5-pro", "prompt": "x", "resolution": "4k"},
            400,
            "invalid_request",
            "resolution",
        ),
        (
            {"model": "seedance-1.5-pro", "prompt": "x", "duration": 13},
            400,
            "invalid_request",
            "duration",
        ),
        (
            {"model": "happyhorse-1.0-t2v", "prompt": "x", "duration": -1},
            400,
            "invalid_request",
            "duration",
        ),
        ({"model": "seedance-1.5-pro"}, 400, "invalid_request", "prompt"),
        # Image-to-video refuses a prompt alone, as its provider does.
        (
            {"model": "happyhorse-1.0-i2v", "prompt": "a horse runs"},
            400,
            "upstream_invalid_parameter",
            "content",
        ),
    ],
)
async def test_video_validation(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str, param: str
) -> None:
    err = assert_envelope(await client.post(VIDEOS, json=body), status, code)
    assert err["param"] == param


async def test_video_auto_duration_within_range(client: httpx.AsyncClient) -> None:
    body = {"model": "seedance-1.5-pro", "prompt": "auto please", "duration": -1}
    vid = (await client.post(VIDEOS, json=body)).json()["id"]
    duration = (await client.get(f"{VIDEOS}/{vid}")).json()["duration"]
    assert catalog.VIDEO_DURATIONS["seedance-1.5-pro"].allows(duration) and duration > 0


async def test_image_to_video_needs_a_first_frame_and_refusing_costs_nothing(
    sim: AllTokenSim, client: httpx.AsyncClient
) -> None:
    before = sim.balance(DEMO_KEY)
    refused = await client.post(VIDEOS, json={"model": "happyhorse-1.0-i2v", "prompt": "gallop"})
    err = assert_envelope(refused, 400, "upstream_invalid_parameter")
    assert "image" in err["message"] and sim.balance(DEMO_KEY) == before
    frame = {
        "type": "image_url",
        "role": "first_frame",
        "image_url": {"url": "https://example.com/horse.png"},
    }
    body = {"model": "happyhorse-1.0-i2v", "prompt": "gallop", "content": [frame]}
    accepted = await client.post(VIDEOS, json=body)
    assert accepted.status_code == 202, accepted.text
    task = VideoTaskResponse.model_validate(accepted.json())
    assert task.input_type is not None and task.input_type.value == "image_first_frame"
    assert sim.balance(DEMO_KEY) < before
    # Text-to-video takes the prompt alone.
    t2v = await client.post(VIDEOS, json={"model": "happyhorse-1.0-t2v", "prompt": "gallop"})
    assert t2v.status_code == 202


async def test_video_submit_reply_is_queued_even_when_done_at_once(make_sim: SimFactory) -> None:
    sim = await make_sim(video_seconds=0)
    async with _client(sim) as c:
        resp = await c.post(VIDEOS, json={"model": "seedance-2.0", "prompt": "x"})
        task = VideoTaskResponse.model_validate(resp.json())
        assert (resp.status_code, task.status.value, task.video_url) == (202, "queued", None)
        assert (await c.get(f"{VIDEOS}/{task.id}")).json()["status"] == "completed"


async def test_video_list(make_sim: SimFactory) -> None:
    sim = await make_sim(video_seconds=30)
    async with _client(sim) as c, _client(sim, sim.issue_key(5)) as other:
        ids = [
            (await c.post(VIDEOS, json={"model": "seedance-1.5-pro", "prompt": f"v{i}"})).json()[
                "id"
            ]
            for i in range(3)
        ]
        await c.post(f"{VIDEOS}/{ids[0]}/cancel")
        listing = (await c.get(VIDEOS, params={"limit": 2})).json()
        VideoListResponse.model_validate(listing)
        assert listing["total"] == 3 and [t["id"] for t in listing["items"]] == ids[:0:-1]
        cancelled = (await c.get(VIDEOS, params={"status": "cancelled"})).json()
        assert cancelled["total"] == 1 and cancelled["items"][0]["id"] == ids[0]
        assert (await other.get(VIDEOS)).json() == {"items": [], "total": 0}
        assert_envelope(await c.get(VIDEOS, params={"limit": 0}), 400, "invalid_request")
        assert_envelope(await c.get(VIDEOS, params={"status": "done"}), 400, "invalid_request")


# ---- models and catalog ----------------------------------------------------------------------


async def test_model_lists(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/v1/models")).json()
    ModelList.model_validate(everything)
    by_modality: dict[str, set[str]] = {}
    for m in everything["data"]:
        by_modality.setdefault(m["modality"], set()).add(m["id"])
        assert {"display_name", "brand", "family", "series", "description"} <= set(m)
    assert set(catalog.CHAT_MODELS) <= by_modality["text"] | by_modality["vision"]
    assert by_modality["image"] == set(catalog.IMAGE_MODELS)

    images = (await client.get("/v1/images/models")).json()
    ModelList.model_validate(images)
    assert [m["id"] for m in images["data"]] == list(catalog.IMAGE_MODELS)
    assert all(m["output_modalities"] == ["image"] for m in images["data"])

    videos = (await client.get("/v1/videos/models")).json()
    ModelList.model_validate(videos)
    assert [m["id"] for m in videos["data"]] == list(catalog.VIDEO_MODELS)
    for m in videos["data"]:
        rng = catalog.VIDEO_DURATIONS[m["id"]]
        duration = m["capabilities"]["duration"]
        assert duration["type"] == "range"
        assert (duration["min"], duration["max"], duration["supports_auto"]) == (
            rng.min,
            rng.max,
            rng.auto,
        )
        assert m["capabilities"]["ratios"]["values"] == list(catalog.VIDEO_RATIOS)


async def test_public_catalog_uses_both_price_field_styles(sim: AllTokenSim) -> None:
    async with _client(sim, key=None) as anon:
        styles = set()
        for model in SIM_CHAT_MODELS:
            resp = await anon.get(f"/api-account/models/{model}")
            data = resp.json()["data"]
            assert data["id"] == model
            if PRICE_FIELD_STYLE[model] == "input_output":
                prices = (data["input_price"], data["output_price"])
                assert "prompt_price" not in data
            else:
                prices = (data["prompt_price"], data["completion_price"])
                assert "input_price" not in data
            assert all(isinstance(p, str) and Decimal(p) > 0 for p in prices)
            styles.add(PRICE_FIELD_STYLE[model])
        assert styles == {"input_output", "prompt_completion"}

        # Per-1M catalog prices and the per-1K SSE cost line agree.
        mini = (await anon.get("/api-account/models/gpt-5.4-mini")).json()["data"]
        p_in = Decimal(mini.get("input_price") or mini["prompt_price"])
        assert p_in / 1000 == Decimal("0.0002")
        assert_envelope(await anon.get("/api-account/models/nope-1"), 404, "model_not_found")


# ---- faults and control API --------------------------------------------------------------------


async def test_error_fault_with_retry_after_is_consumed(
    sim: AllTokenSim, client: httpx.AsyncClient
) -> None:
    sim.add_fault(Fault(path=CHAT, status=429, code="rate_limited", retry_after=2, times=2))
    for _ in range(2):
        resp = await client.post(CHAT, json=chat_body("hi"))
        assert_envelope(resp, 429, "rate_limited")
        assert resp.headers["Retry-After"] == "2"
    assert (await client.post(CHAT, json=chat_body("hi"))).status_code == 200
    assert sim.stats.faults_triggered == 2


async def test_an_injected_429_always_carries_retry_after(
    sim: AllTokenSim, client: httpx.AsyncClient
) -> None:
    """AllToken's 429s say how long to wait (integer seconds), even when the fault names none."""
    sim.add_fault(Fault(path=CHAT, status=429))
    resp = await client.post(CHAT, json=chat_body("hi"))
    assert_envelope(resp, 429, "rate_limited")
    assert resp.headers["Retry-After"] == "1"
    sim.add_fault(Fault(path=CHAT, status=503))
    resp = await client.post(CHAT, json=chat_body("hi"))
    assert resp.status_code == 503 and "Retry-After" not in resp.headers


async def test_fault_method_filter_and_latency(sim: AllTokenSim, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault(method="post", path="/v1/images", status=503))
    assert (await client.get("/v1/images/models")).status_code == 200
    assert_envelope(
        await client.post(IMAGES, json={"model": "gpt-image-2", "prompt": "x"}),
        503,
        "all_providers_failed",
    )
    sim.add_fault(Fault(path="/v1/models", latency_ms=200))
    started = time.perf_counter()
    assert (await client.get("/v1/models")).status_code == 200
    assert time.perf_counter() - started >= 0.19


async def test_malformed_json_fault(sim: AllTokenSim, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault(path="/v1/images/generations/", mode="malformed_json"))
    resp = await client.get(f"{IMAGES}/igen_whatever")
    assert resp.status_code == 200 and resp.text == "{not json"


async def test_malformed_sse_fault(sim: AllTokenSim, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault(path=CHAT, mode="malformed_sse"))
    resp = await client.post(CHAT, json=chat_body("hi", stream=True))
    assert resp.status_code == 200 and "data: {oops" in resp.text


async def test_reset_mid_stream_fault(sim: AllTokenSim, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault(path=CHAT, mode="reset_mid_stream"))
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("POST", CHAT, json=chat_body("hi", stream=True)) as resp:
            async for line in resp.aiter_lines():
                received.append(line)
    assert any(line.startswith("data: {") for line in received)
    # The server survives and the next request is normal.
    assert (await client.post(CHAT, json=chat_body("hi"))).status_code == 200


async def test_top_level_request_id_fault(sim: AllTokenSim, client: httpx.AsyncClient) -> None:
    sim.add_fault(Fault(path=CHAT, mode="top_level_request_id", status=502, code="bad_gateway"))
    resp = await client.post(CHAT, json=chat_body("hi"))
    body = resp.json()
    assert resp.status_code == 502 and body["request_id"].startswith("req_")
    assert body["error"]["code"] == "bad_gateway" and "request_id" not in body["error"]
    assert "x-request-id" not in resp.headers


async def test_control_api_over_http(sim: AllTokenSim) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as ctl:
        resp = await ctl.post("/_sim/faults", json={"path": CHAT, "status": 500, "times": 3})
        assert resp.status_code == 201 and resp.json()["id"] >= 1
        assert len((await ctl.get("/_sim/faults")).json()["faults"]) == 1
        assert (await ctl.delete("/_sim/faults")).json() == {"cleared": 1}
        bad = await ctl.post("/_sim/faults", json={"path": CHAT, "mode": "explode"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "mode"

        issued = (await ctl.post("/_sim/keys", json={"balance": 3.5})).json()
        assert issued["key"].startswith("sk-at-") and issued["balance"] == 3.5
        async with _client(sim, issued["key"]) as c:
            assert (await c.post(CHAT, json=chat_body("hi"))).status_code == 200
        left = (await ctl.get(f"/_sim/keys/{issued['key']}")).json()["balance"]
        assert 0 < left < 3.5

        stats = (await ctl.get("/_sim/stats")).json()
        assert stats["requests"]["POST /v1/chat/completions"] == 1
        assert stats["chat_completions"] == 1

        patched = (await ctl.patch("/_sim/config", json={"latency_ms": 5})).json()
        assert patched["latency_ms"] == 5 and sim.config.latency_ms == 5
