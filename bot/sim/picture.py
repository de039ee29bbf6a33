"""Demo pictures for the simulators: the prompt's words and colours, drawn with Pillow.

A simulated image must be recognisably *about* its prompt (so a demo looks alive) and
recognisably *simulated* (so nobody mistakes it for a model's output): the prompt is wrapped
onto the picture, its words pick the palette, a stable hash places the shapes, and a
"SIMULATED" badge sits in the top-left corner.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import re
import textwrap

from PIL import Image, ImageDraw, ImageFont

from bot.backends.alltoken import catalog

RGB = tuple[int, int, int]
LABEL = "SIMULATED"

# Words that should colour the picture the way a reader expects; checked in prompt order.
_THEMES: dict[str, tuple[RGB, RGB, RGB]] = {
    "sunset": ((255, 140, 66), (120, 40, 110), (255, 214, 102)),
    "sunrise": ((255, 183, 94), (255, 120, 150), (255, 236, 160)),
    "dusk": ((72, 52, 120), (240, 128, 90), (255, 200, 120)),
    "night": ((12, 20, 60), (40, 30, 90), (240, 240, 200)),
    "ocean": ((20, 90, 160), (10, 40, 90), (120, 210, 230)),
    "sea": ((30, 110, 170), (12, 50, 100), (140, 220, 235)),
    "waves": ((40, 120, 190), (15, 60, 120), (220, 245, 255)),
    "forest": ((40, 110, 60), (15, 50, 30), (170, 210, 110)),
    "desert": ((235, 190, 120), (190, 110, 60), (255, 240, 200)),
    "snow": ((225, 235, 245), (150, 175, 205), (255, 255, 255)),
    "fire": ((255, 90, 30), (120, 20, 10), (255, 210, 60)),
    "space": ((10, 10, 30), (50, 20, 80), (200, 200, 255)),
    "lighthouse": ((60, 90, 140), (230, 120, 90), (250, 240, 210)),
}
_COLOURS: dict[str, RGB] = {
    "red": (210, 40, 45),
    "orange": (245, 140, 40),
    "yellow": (245, 210, 50),
    "gold": (212, 175, 55),
    "green": (50, 160, 80),
    "teal": (30, 150, 150),
    "blue": (40, 100, 210),
    "navy": (20, 35, 90),
    "purple": (130, 60, 170),
    "violet": (140, 90, 200),
    "pink": (240, 120, 170),
    "brown": (120, 80, 45),
    "black": (25, 25, 28),
    "white": (240, 240, 240),
    "grey": (128, 128, 135),
    "gray": (128, 128, 135),
    "silver": (190, 195, 200),
}


def image_dimensions(size: str, cap: int | None = None) -> tuple[int, int]:
    """Pixel size for an image request's `size` (`auto` = the catalog default), scaled to `cap`
    (None: exactly the requested size)."""
    spec = catalog.DEFAULT_IMAGE_SIZE if size == "auto" else size
    width, height = (int(p) for p in spec.lower().split("x"))
    return fit(width, height, cap)


def fit(width: int, height: int, cap: int | None) -> tuple[int, int]:
    """Scale (width, height) down, keeping the aspect ratio, so neither side exceeds `cap`."""
    if cap is None:
        return width, height
    scale = min(1.0, cap / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def palette(prompt: str) -> tuple[RGB, RGB, RGB]:
    """(sky, ground, accent) for a prompt: a theme word, colour words, else the prompt's hash."""
    words = re.findall(r"[a-z]+", prompt.lower())
    named = [_COLOURS[w] for w in words if w in _COLOURS]
    for word in words:
        if word in _THEMES:
            sky, ground, accent = _THEMES[word]
            # "a red boat on the ocean": the ocean's colours, and a red accent.
            return sky, ground, named[0] if named else accent
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    hashed: list[RGB] = [(digest[i], digest[i + 1], digest[i + 2]) for i in (0, 3, 6)]
    top, bottom, accent = [*named, *hashed][:3]
    if len(named) == 1:
        # One colour named: the whole picture in its shades.
        bottom = _shade(top, 0.45)
    return top, bottom, accent


def _shade(colour: RGB, factor: float) -> RGB:
    r, g, b = (round(c * factor) for c in colour)
    return r, g, b


def _luma(colour: RGB) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, px))


def _backdrop(width: int, height: int, top: RGB, bottom: RGB) -> Image.Image:
    # A 256-step gradient stretched by Pillow is far faster than per-pixel Python.
    mask = Image.linear_gradient("L").resize((width, height))
    return Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    )


def _shapes(canvas: Image.Image, rng: random.Random, accent: RGB, bottom: RGB) -> None:
    width, height = canvas.size
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    unit = min(width, height)
    # A "sun" (or moon) and a horizon band give every picture a scene-like structure.
    r = unit * rng.uniform(0.10, 0.18)
    cx, cy = width * rng.uniform(0.55, 0.85), height * rng.uniform(0.15, 0.35)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*accent, 230))
    horizon = height * rng.uniform(0.62, 0.72)
    points = [(0.0, float(height)), (0.0, horizon)]
    for i in range(1, 9):
        points.append((width * i / 8, horizon + unit * rng.uniform(-0.06, 0.06)))
    points.append((float(width), float(height)))
    draw.polygon(points, fill=(*_shade(bottom, 0.7), 200))
    for _ in range(rng.randint(3, 6)):
        size = unit * rng.uniform(0.04, 0.12)
        x, y = width * rng.random(), height * rng.uniform(0.05, 0.95)
        colour = (*_shade(accent, rng.uniform(0.6, 1.1)), rng.randint(90, 170))
        if rng.random() < 0.5:
            draw.ellipse((x - size, y - size, x + size, y + size), fill=colour)
        else:
            draw.regular_polygon(
                (x, y, size), rng.choice((3, 4, 5, 6)), rng.uniform(0, 90), fill=colour
            )
    canvas.paste(Image.alpha_composite(canvas.convert("RGBA"), layer).convert("RGB"))


def _caption(canvas: Image.Image, prompt: str) -> None:
    width, height = canvas.size
    px = max(6, min(width, height) // 14)
    font = _font(px)
    columns = max(8, int(width * 0.8 / (px * 0.55)))
    lines = textwrap.wrap(" ".join(prompt.split()), columns, max_lines=4, placeholder=" …")
    if not lines:
        return
    text = "\n".join(lines)
    draw = ImageDraw.Draw(canvas, "RGBA")
    box = draw.multiline_textbbox((0, 0), text, font=font, spacing=px // 4, align="center")
    tw, th = box[2] - box[0], box[3] - box[1]
    x, y = (width - tw) / 2, height * 0.78 - th / 2
    pad = px // 2
    panel = (x - pad, y - pad, x + tw + pad, y + th + pad)
    draw.rounded_rectangle(panel, radius=pad, fill=(0, 0, 0, 120))
    draw.multiline_text(
        (x - box[0], y - box[1]),
        text,
        font=font,
        fill=(255, 255, 255),
        spacing=px // 4,
        align="center",
    )


def _badge_layout(
    width: int, height: int
) -> tuple[
    ImageFont.FreeTypeFont | ImageFont.ImageFont, tuple[int, int, int, int], tuple[float, float]
]:
    """(font, badge rectangle, text origin) of the SIMULATED badge in the top-left corner."""
    font = _font(max(6, min(width, height) // 24))
    pad = max(2, min(width, height) // 72)
    left, top, right, bottom = font.getbbox(LABEL)
    rect = (0, 0, math.ceil(right - left) + 3 * pad, math.ceil(bottom - top) + 3 * pad)
    return font, rect, (1.5 * pad - left, 1.5 * pad - top)


def _badge(canvas: Image.Image) -> None:
    font, rect, origin = _badge_layout(*canvas.size)
    draw = ImageDraw.Draw(canvas, "RGBA")
    draw.rectangle(rect, fill=(200, 30, 45))
    draw.text(origin, LABEL, font=font, fill=(255, 255, 255))


def label_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Where the SIMULATED badge is drawn (left, top, right, bottom) on a width x height image."""
    return _badge_layout(width, height)[1]


def prompt_picture(prompt: str, width: int, height: int, *, variant: str = "") -> bytes:
    """A PNG of `width` x `height` that shows `prompt` and is labelled SIMULATED."""
    top, bottom, accent = palette(prompt)
    if _luma(top) > 200 and _luma(bottom) > 200:
        bottom = _shade(bottom, 0.6)  # white text needs some dark somewhere
    rng = random.Random(hashlib.sha256(f"{prompt}#{variant}".encode()).digest())
    canvas = _backdrop(width, height, top, bottom)
    _shapes(canvas, rng, accent, bottom)
    _caption(canvas, prompt)
    _badge(canvas)
    out = io.BytesIO()
    canvas.save(out, format="PNG", compress_level=3)
    return out.getvalue()
