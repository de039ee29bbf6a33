"""The simulators' demo video: a tiny playable H.264 MP4 shipped with the package.

The file is made once, offline, from frames drawn here (`python -m bot.sim.demo_video`, with
imageio-ffmpeg installed just for that run: it is not a dependency); at run time the
simulators only read the shipped bytes.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bot.sim.picture import LABEL

WIDTH, HEIGHT = 160, 90
FPS = 12
SECONDS = 2
FILE_NAME = "demo.mp4"


@functools.cache
def demo_mp4() -> bytes:
    """The shipped demo MP4 (read once per process)."""
    return importlib.resources.files("bot.sim").joinpath(FILE_NAME).read_bytes()


def frames() -> Iterator[bytes]:
    """RGB frames: a sun crossing a dusk sky, captioned, with the SIMULATED badge."""
    label_font = ImageFont.load_default(size=9)
    caption_font = ImageFont.load_default(size=11)
    count = FPS * SECONDS
    for i in range(count):
        t = i / count
        frame = Image.composite(
            Image.new("RGB", (WIDTH, HEIGHT), (200, 90, 70)),
            Image.new("RGB", (WIDTH, HEIGHT), (50, 60, 120)),
            Image.linear_gradient("L").resize((WIDTH, HEIGHT)),
        )
        draw = ImageDraw.Draw(frame)
        x = 20 + t * (WIDTH - 40)
        y = 45 - 18 * math.sin(t * math.pi)
        draw.ellipse((x - 10, y - 10, x + 10, y + 10), fill=(250, 220, 130))
        draw.rectangle((0, 62, WIDTH, HEIGHT), fill=(40, 40, 70))
        draw.text((WIDTH / 2, 76), "tokenbot demo video", font=caption_font, anchor="mm")
        draw.rectangle((0, 0, 62, 13), fill=(200, 30, 45))
        draw.text((3, 2), LABEL, font=label_font, fill=(255, 255, 255))
        yield frame.tobytes()


def write(path: Path) -> None:
    """Encode the frames as a small, widely playable MP4 (H.264 baseline, yuv420p)."""
    import imageio_ffmpeg  # only needed to regenerate the shipped file

    writer = imageio_ffmpeg.write_frames(
        str(path),
        (WIDTH, HEIGHT),
        fps=FPS,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        # faststart puts `moov` first so a player can start before the download ends.
        output_params=["-profile:v", "baseline", "-crf", "30", "-movflags", "+faststart"],
    )
    writer.send(None)
    for frame in frames():
        writer.send(frame)
    writer.close()


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name(FILE_NAME))
