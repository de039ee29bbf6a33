"""The demo's media: pictures about their prompt, a playable MP4, and copies that outlive the demo."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from adapters.console.conversation import ConsoleConversation, ConsolePrinter
from adapters.console.demo_links import DemoMedia
from bot.core.messages import Destination, Link, Notice, Part
from bot.sim.alltoken.server import AllTokenSim, AllTokenSimConfig
from bot.sim.demo_video import demo_mp4
from bot.sim.picture import fit, label_box, palette, prompt_picture

DEMO_KEY = "sk-at-demo-0000000000000000000000"
BADGE_RED = (200, 30, 45)


@pytest.fixture
async def big_sim() -> AsyncIterator[AllTokenSim]:
    """A simulator with the default (demo) picture size: exactly what was requested."""
    sim = AllTokenSim(AllTokenSimConfig(image_seconds=0, video_seconds=0, tokens_per_second=0))
    assert sim.config.image_pixels is None
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def _image(sim: AllTokenSim, prompt: str, size: str | None = None) -> Image.Image:
    body: dict[str, Any] = {"model": "gpt-image-2", "prompt": prompt}
    if size is not None:
        body["size"] = size
    headers = {"Authorization": f"Bearer {DEMO_KEY}"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=10) as c:
        task_id = (await c.post("/v1/images/generations/async", json=body)).json()["id"]
        done = (await c.get(f"/v1/images/generations/{task_id}")).json()
    assert done["status"] == "completed", done
    return Image.open(io.BytesIO(base64.b64decode(done["data"][0]["b64_json"])))


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def _differs(a: Image.Image, b: Image.Image) -> float:
    """Share of pixels that differ between two same-sized images."""
    assert a.size == b.size
    pa, pb = a.tobytes(), b.tobytes()
    changed = sum(1 for i in range(0, len(pa), 3) if pa[i : i + 3] != pb[i : i + 3])
    return changed / (a.width * a.height)


# ---- pictures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (None, (1024, 1024)),
        ("auto", (1024, 1024)),
        ("1536x1024", (1536, 1024)),
        ("1024x1536", (1024, 1536)),
        ("2048x1152", (2048, 1152)),  # beyond the old 1536 px cap
    ],
)
async def test_image_is_drawn_at_the_requested_size(
    big_sim: AllTokenSim, size: str | None, expected: tuple[int, int]
) -> None:
    image = await _image(big_sim, "a lighthouse at dusk", size)
    assert image.format == "PNG" and image.size == expected


async def test_a_default_picture_shows_its_content(big_sim: AllTokenSim) -> None:
    """Not a thumbnail: a scene of many colours, the prompt legible in its caption panel."""
    image = (await _image(big_sim, "a lighthouse at dusk")).convert("RGB")
    assert image.size == (1024, 1024)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 500
    # The caption is drawn in white at ~1/14 of the height: tall enough to read.
    band = image.crop((0, int(1024 * 0.70), 1024, int(1024 * 0.86)))
    white = sum(n for n, c in band.getcolors(maxcolors=1 << 20) or [] if c == (255, 255, 255))
    assert white > 2000


async def test_image_pixels_caps_the_longest_side_keeping_the_ratio() -> None:
    sim = AllTokenSim(AllTokenSimConfig(image_seconds=0, image_pixels=96))
    await sim.start()
    try:
        assert (await _image(sim, "a fox", "1536x1024")).size == (96, 64)
        assert (await _image(sim, "a fox", "2048x1152")).size == (96, 54)
    finally:
        await sim.stop()


async def test_video_last_frame_has_the_video_shape(big_sim: AllTokenSim) -> None:
    url = await _video_url(
        big_sim, {"ratio": "9:16", "resolution": "480p", "return_last_frame": True}
    )
    frame_url = url.replace("/_media/videos/", "/_media/frames/").replace(".mp4?", ".png?")
    async with httpx.AsyncClient() as anon:
        resp = await anon.get(frame_url)
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert _decode(resp.content).size == (480, 853)


def test_different_prompts_give_different_pictures_and_one_prompt_the_same() -> None:
    fox = _decode(prompt_picture("a red fox in the snow", 256, 256))
    boat = _decode(prompt_picture("a sailing boat at sea", 256, 256))
    assert _differs(fox, boat) > 0.5
    assert prompt_picture("a red fox in the snow", 256, 256) == prompt_picture(
        "a red fox in the snow", 256, 256
    )
    # Several images of one task differ from each other too.
    other = _decode(prompt_picture("a red fox in the snow", 256, 256, variant="1"))
    assert _differs(fox, other) > 0.05


def test_the_prompt_is_written_on_the_picture() -> None:
    # The caption panel sits around 78 % of the height: words there change many pixels.
    short = _decode(prompt_picture("fox", 512, 512))
    long = _decode(prompt_picture("fox " * 12, 512, 512))
    band = (0, int(512 * 0.70), 512, int(512 * 0.86))
    assert _differs(short.crop(band), long.crop(band)) > 0.05


def test_the_simulated_label_is_in_the_top_left_corner() -> None:
    for width, height in [(1024, 1024), (1536, 1024), (64, 64)]:
        image = _decode(prompt_picture("an ocean at night", width, height))
        left, top, right, bottom = label_box(width, height)
        assert 0 < right <= width and 0 < bottom < height / 4
        assert right < width / 3 or width < 128  # a corner, not a banner (tiny test images aside)
        badge = image.crop((left, top, right, bottom))
        colours = {c for _, c in badge.getcolors(maxcolors=1 << 16) or [] if isinstance(c, tuple)}
        near_red = [
            c for c in colours if all(abs(a - b) < 12 for a, b in zip(c, BADGE_RED, strict=True))
        ]
        light = [c for c in colours if min(c) > 100]  # anti-aliased at tiny sizes
        assert near_red, "the badge background is missing"
        assert light, "the badge has no text"
        # Just outside the badge the picture's own background shows, not the badge colour.
        outside = image.getpixel((right + 2, bottom + 2))
        assert isinstance(outside, tuple) and outside[:3] != BADGE_RED


def test_prompt_words_pick_the_colours() -> None:
    sky, ground, _ = palette("waves crashing on the ocean shore")
    assert sky[2] > sky[0] and ground[2] > ground[0]  # blues
    sky, _, _ = palette("a sunset over the hills")
    assert sky[0] > sky[2]  # warm
    top, bottom, _ = palette("a big green field")
    assert top == (50, 160, 80) and bottom[1] > bottom[0]
    _, _, accent = palette("a red boat on the ocean")
    assert accent == (210, 40, 45)
    # No colour word: the hash decides, and stays stable.
    assert palette("quantum teapot") == palette("quantum teapot") != palette("quantum kettle")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prompt=st.text(min_size=1, max_size=300),
    width=st.integers(16, 160),
    height=st.integers(16, 160),
)
def test_any_prompt_draws_a_decodable_picture(prompt: str, width: int, height: int) -> None:
    assert _decode(prompt_picture(prompt, width, height)).size == (width, height)


@given(w=st.integers(1, 4000), h=st.integers(1, 4000), cap=st.integers(16, 2048))
def test_fit_never_exceeds_the_cap_and_keeps_small_sizes(w: int, h: int, cap: int) -> None:
    fw, fh = fit(w, h, cap)
    assert max(fw, fh) <= max(cap, 1) and fw >= 1 and fh >= 1
    if max(w, h) <= cap:
        assert (fw, fh) == (w, h)


# ---- the video -------------------------------------------------------------------------------


def _boxes(data: bytes) -> list[tuple[str, bytes]]:
    """The ISO-BMFF boxes of `data` as (type, payload); raises if a size runs off the end."""
    out: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        assert size >= header and pos + size <= len(data), f"bad box {kind!r} at {pos}"
        out.append((kind.decode("latin-1"), data[pos + header : pos + size]))
        pos += size
    return out


def assert_playable_mp4(data: bytes) -> None:
    """ftyp first with an MP4 brand, a moov with mvhd and a video trak, and media data."""
    top = _boxes(data)
    kinds = [k for k, _ in top]
    assert kinds[0] == "ftyp" and top[0][1][:4] in (b"isom", b"mp42", b"mp41")
    assert "moov" in kinds and "mdat" in kinds
    moov = dict(_boxes(dict(top)["moov"]))
    assert "mvhd" in moov and "trak" in moov
    trak = dict(_boxes(moov["trak"]))
    mdia = dict(_boxes(trak["mdia"]))
    hdlr = mdia["hdlr"]
    assert hdlr[8:12] == b"vide"  # version/flags, pre_defined, then the handler type
    # mvhd v0: version/flags, created, modified, timescale, duration.
    _, _, _, timescale, duration = struct.unpack(">IIIII", moov["mvhd"][:20])
    assert 1 <= duration / timescale <= 10
    assert len(dict(top)["mdat"]) > 0


async def _video_url(sim: AllTokenSim, extra: dict[str, Any] | None = None) -> str:
    body = {"model": "seedance-1.5-pro", "prompt": "waves", "duration": 4, **(extra or {})}
    headers = {"Authorization": f"Bearer {DEMO_KEY}"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=10) as c:
        vid = (await c.post("/v1/videos/generations", json=body)).json()["id"]
        done = (await c.get(f"/v1/videos/generations/{vid}")).json()
    assert done["status"] == "completed", done
    return str(done["video_url"])


async def test_the_simulated_video_is_a_small_playable_mp4(big_sim: AllTokenSim) -> None:
    url = await _video_url(big_sim)
    async with httpx.AsyncClient() as anon:
        resp = await anon.get(url)
    assert resp.status_code == 200 and resp.headers["content-type"] == "video/mp4"
    assert resp.content == demo_mp4()
    assert len(resp.content) < 64 * 1024
    assert_playable_mp4(resp.content)


def test_box_check_rejects_the_old_header_only_bytes() -> None:
    # What the simulator used to serve: ftyp + mdat and no moov, which no player opens.
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    mdat = struct.pack(">I", 8 + 64) + b"mdat" + bytes(64)
    with pytest.raises(AssertionError):
        assert_playable_mp4(ftyp + mdat)
    with pytest.raises(AssertionError):
        assert_playable_mp4(demo_mp4()[:-10])  # truncated


# ---- console demo: copies of links that die with the demo -----------------------------------


def _conversation(out: io.StringIO, out_dir: Path, demo: DemoMedia | None) -> ConsoleConversation:
    dest = Destination(
        platform="console", workspace="console", channel="console", user="demo", is_direct=True
    )
    return ConsoleConversation(dest, ConsolePrinter(out), out_dir, None, demo)


async def test_console_keeps_one_copy_of_simulator_media_links(
    big_sim: AllTokenSim, tmp_path: Path
) -> None:
    url = await _video_url(big_sim)
    vid = url.split("/_media/videos/", 1)[1].split(".mp4", 1)[0]
    out = io.StringIO()
    conv = _conversation(out, tmp_path / "out", DemoMedia([big_sim.base_url], tmp_path / "out"))
    parts: list[Part] = [
        Notice(level="success", text="🎬 Video ready"),
        Link(url=url, label="Download"),
    ]
    await conv.say(parts)
    await conv.edit(await conv.say(parts), parts)  # shown again: still one download
    saved = tmp_path / "out" / f"demo-{vid}.mp4"
    assert saved.read_bytes() == demo_mp4()
    assert big_sim.stats.video_downloads[vid] == 1
    assert out.getvalue().count(f"💾 saved a copy to {saved}") == 3
    assert "works only while this demo runs" in out.getvalue()


async def test_console_copies_only_simulator_media(big_sim: AllTokenSim, tmp_path: Path) -> None:
    out = io.StringIO()
    conv = _conversation(out, tmp_path / "out", DemoMedia([big_sim.base_url], tmp_path / "out"))
    await conv.say(
        [
            Link(url=f"{big_sim.base_url}/v1/models", label="not media"),
            Link(url="http://127.0.0.1:9/elsewhere/v.mp4", label="not a simulator"),
        ]
    )
    assert "💾" not in out.getvalue() and not (tmp_path / "out").exists()


async def test_console_says_when_a_copy_could_not_be_made(
    big_sim: AllTokenSim, tmp_path: Path
) -> None:
    url = await _video_url(big_sim)
    out = io.StringIO()
    conv = _conversation(out, tmp_path / "out", DemoMedia([big_sim.base_url], tmp_path / "out"))
    await conv.say([Link(url=url.replace("sig=", "sig=00"), label="Download")])
    text = out.getvalue()
    assert "Could not save a copy" in text and "403" in text and "Traceback" not in text


async def test_console_without_simulators_copies_nothing(
    big_sim: AllTokenSim, tmp_path: Path
) -> None:
    url = await _video_url(big_sim)
    out = io.StringIO()
    await _conversation(out, tmp_path / "out", None).say([Link(url=url, label="Download")])
    assert "💾" not in out.getvalue() and not (tmp_path / "out").exists()


def _demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENBOT_", "ALLTOKEN_"))}
    env.update(
        TOKENBOT_SIM_IMAGE_SECONDS="0.3",
        TOKENBOT_SIM_VIDEO_SECONDS="0.5",
        TOKENBOT_SIM_TOKENS_PER_SECOND="0",
        PYTHONUNBUFFERED="1",
    )
    return env


async def test_console_demo_saves_media_that_outlives_it(tmp_path: Path) -> None:
    out_dir = tmp_path / "tokenbot-out"
    script = "/alltoken-image a lighthouse at dusk\n/alltoken-video waves on a pier --duration=4\n"
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "console", "--sim", "--out", str(out_dir)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_demo_env(),
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    # The demo has exited, so its simulators are gone; the files remain.
    (png,) = out_dir.glob("alltoken-image-*.png")
    assert _decode(png.read_bytes()).size == (1024, 1024)
    assert re.search(rf"🖼 saved {re.escape(str(png))} \([\d,]+ bytes\) — .*\(simulated\)", out)
    (mp4,) = out_dir.glob("demo-*.mp4")
    assert_playable_mp4(mp4.read_bytes())
    assert f"💾 saved a copy to {mp4}" in out
    assert "the link above works only while this demo runs" in out
    assert "Traceback" not in out + proc.stderr
