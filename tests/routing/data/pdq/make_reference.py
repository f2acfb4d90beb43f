"""Regenerate reference.json: the PDQ hashes ThreatExchange's C++ reference gives these images.

Dev-only: needs ``pdqhash`` (Python bindings compiling ThreatExchange's pdq/cpp; source-only on the package
index, so it needs a C++ compiler), which is not a dependency of the project:

    pip install --target /tmp/pdqhash-dev pdqhash==0.2.8
    PYTHONPATH=/tmp/pdqhash-dev:. python tests/routing/data/pdq/make_reference.py [--images]

``--images`` draws the PNGs again first (they are committed; redraw only to change the set). The reference is
fed the same decoded RGB pixels the platform hashes (Pillow, RGB), as pdqhash's own tests feed it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def _field(rng: np.random.Generator, size: tuple[int, int], cells: int) -> Image.Image:
    """A photo-like image: a coarse random colour field, smoothly enlarged."""
    w, h = size
    base = rng.normal(size=(max(2, h // cells), max(2, w // cells), 3))
    scaled = (base - base.min()) / np.ptp(base) * 255
    return Image.fromarray(scaled.astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)


def draw_images() -> None:
    rng = np.random.default_rng(20261207)
    _field(rng, (480, 360), 40).save(HERE / "field-480x360.png")
    _field(rng, (1000, 250), 25).save(HERE / "field-1000x250.png")
    _field(rng, (64, 64), 8).save(HERE / "field-64x64.png")  # the reference skips the blur at exactly 64x64
    _field(rng, (333, 517), 60).save(HERE / "field-333x517.png")
    shapes = Image.new("RGB", (400, 300), (240, 235, 220))
    pen = ImageDraw.Draw(shapes)
    for _ in range(14):
        x, y = int(rng.integers(0, 360)), int(rng.integers(0, 260))
        colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
        pen.rectangle((x, y, x + int(rng.integers(10, 120)), y + int(rng.integers(10, 90))), fill=colour)
    shapes.save(HERE / "shapes-400x300.png")
    Image.new("RGB", (300, 200), (128, 128, 128)).save(HERE / "flat-300x200.png")  # quality 0
    _field(rng, (9, 4), 2).save(HERE / "tiny-9x4.png")  # a side under 5: all zeros


def _hex(bits: np.ndarray) -> str:
    return f"{int(''.join(str(int(b)) for b in bits), 2):064x}"


def main() -> None:
    import pdqhash  # dev-only, not a dependency

    if "--images" in sys.argv:
        draw_images()
    images: dict[str, dict[str, object]] = {}
    out = {"reference": f"pdqhash {pdqhash.__version__} (ThreatExchange pdq/cpp)", "images": images}
    for path in sorted(HERE.glob("*.png")):
        pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        bits, quality = pdqhash.compute(pixels)
        dihedral, _ = pdqhash.compute_dihedral(pixels)
        images[path.name] = {
            "pdq": _hex(bits),
            "quality": int(quality),
            "dihedral": [_hex(d) for d in dihedral],
        }
    (HERE / "reference.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
