"""Render the README's own example commands on the embedded model into one labelled PNG strip.

    .venv/bin/python scripts/embedded_strip.py --out assets/embedded/examples.png

Runs `studio generate` (the same CLI a user types, in a throwaway data dir) for:
  i2v  --image first.png --prompt "moves up"            (first.png: a green circle from the world)
  i2v  --image first.png --prompt "moves left"
  v2v  --video in.mp4 --strength 0.6 --prompt "a pink triangle"   (in.mp4: a blue square moving right)
  t2v  --prompt "a red circle moving right on navy" --seeds 4
and lays every clip out as a row of frames (0, 3, 6, 9, 12, 15), the input above its outputs.
The model card shows the result; look at it after training new weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAMES = (0, 3, 6, 9, 12, 15)
SCALE = 2  # 64 px frames drawn at 128 px
LABEL_W = 330


def world_inputs(folder: Path) -> tuple[Path, Path]:
    """first.png (a green circle on beige) and in.mp4 (a blue square moving right on gray)."""
    import torch

    from pipelines.embedded import world
    from studio.media.video import write_mp4

    g = torch.Generator().manual_seed(7)
    circle = world.sample_batch(1, g, bg=world.BG_NAMES.index("beige"), obj=world.OBJ_NAMES.index("green"),
                                shape=world.SHAPES.index("circle"), motion=world.MOTIONS.index("still"))
    square = world.sample_batch(1, g, bg=world.BG_NAMES.index("gray"), obj=world.OBJ_NAMES.index("blue"),
                                shape=world.SHAPES.index("square"), motion=world.MOTIONS.index("right"))
    image = folder / "first.png"
    Image.fromarray(world.to_uint8(world.render(circle))[0, 0].numpy()).save(image)
    video = folder / "in.mp4"
    write_mp4(world.to_uint8(world.render(square))[0].numpy(), 8, video)
    return image, video


def generate(argv: list[str], data_dir: Path) -> list[dict]:
    """One `studio generate ... --json` in-process; its clips' JSON."""
    import contextlib
    import io

    from studio.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["generate", *argv, "--data-dir", str(data_dir), "--json", "--threads", "1"])
    if rc:
        raise SystemExit(f"studio generate {' '.join(argv)} exited {rc}")
    return json.loads(buf.getvalue())


def read_as(clip: dict) -> str:
    """The label's last lines: the prompt as the model was given it, when it was completed from the input."""
    said = clip.get("prompt_read_as")
    return "\n" + "\n".join(textwrap.wrap(f"read as: {said}", 44)) if said else ""  # the label's width


def frames_of(path: Path) -> np.ndarray:
    from studio.media.limits import MediaLimits
    from studio.media.video import read_video

    frames, _ = read_video(path, MediaLimits())
    return frames


def row(label: str, frames: np.ndarray) -> Image.Image:
    size = 64 * SCALE
    img = Image.new("RGB", (LABEL_W + len(FRAMES) * (size + 4), max(size + 8, 14 * label.count(chr(10)) + 22)),
                    (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = 4
    for line in label.split("\n"):
        draw.text((6, y), line, fill=(0, 0, 0))
        y += 14
    for k, i in enumerate(FRAMES):
        f = Image.fromarray(frames[min(i, len(frames) - 1)]).resize((size, size), Image.NEAREST)
        img.paste(f, (LABEL_W + k * (size + 4), 4))
    return img


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/examples.png"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows: list[Image.Image] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        image, video = world_inputs(tmp)
        still = np.repeat(np.asarray(Image.open(image).convert("RGB"))[None], 16, 0)
        rows.append(row("input: first.png\n(a green circle on beige)", still))
        for prompt in ("moves up", "moves left"):
            clip = generate(["--mode", "i2v", "--image", str(image), "--prompt", prompt, "--seed", "1"], data)[0]
            rows.append(row(f'i2v --image first.png\n--prompt "{prompt}" (seed 1)' + read_as(clip),
                            frames_of(Path(clip["path"]))))
        rows.append(row("input: in.mp4\n(a blue square moving right on gray)", frames_of(video)))
        clip = generate(["--mode", "v2v", "--video", str(video), "--strength", "0.6", "--prompt", "a pink triangle",
                         "--seed", "1"], data)[0]
        rows.append(row('v2v --video in.mp4 --strength 0.6\n--prompt "a pink triangle" (seed 1)' + read_as(clip),
                        frames_of(Path(clip["path"]))))
        clips = generate(["--prompt", "a red circle moving right on navy", "--seeds", "4", "--seed", "1"], data)
        for c in clips:
            rows.append(row(f't2v --prompt "a red circle moving right\non navy" --seeds 4: seed {c["seed"]}',
                            frames_of(Path(c["path"]))))
    width = max(r.width for r in rows)
    strip = Image.new("RGB", (width, sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        strip.paste(r, (0, y))
        y += r.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB, {len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
