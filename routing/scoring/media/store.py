"""Decoding a fetched image under a pixel cap, re-encoding it (which drops metadata and anything hidden after the
image data), a blurred preview, both through Django's storage API (``STORAGES["media"]``), and the signed,
expiring links reviewers' browsers load them from."""

from __future__ import annotations

import io
import uuid
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from PIL import Image, ImageFilter

from routing.scoring.media.fetcher import MediaRefused

SIGNING_SALT = "routing.media.copy"
VARIANTS = ("copy", "preview")


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, fully loaded
    width: int
    height: int


def image_decode(data: bytes, *, max_pixels: int | None = None) -> Decoded:
    """The first frame as RGB; a declared size past the pixel cap is refused before any pixel is decoded."""
    cap = max_pixels or settings.MEDIA_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > cap:
                raise MediaRefused("too_many_pixels", f"{width}x{height} is over {cap} pixels")
            image.seek(0)
            image.load()
            rgb = image.convert("RGB")
    except MediaRefused:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MediaRefused("too_many_pixels", "decompression bomb") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise MediaRefused("undecodable", type(exc).__name__) from None
    return Decoded(rgb, width, height)


def media_storage() -> Storage:
    return storages["media"]


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


def image_store(decoded: Decoded) -> tuple[str, str]:
    """Save the re-encoded copy and a small blurred preview; return their storage names."""
    storage = media_storage()
    stem = uuid.uuid4().hex
    copy = decoded.image.copy()
    copy.thumbnail((settings.MEDIA_COPY_MAX_SIDE, settings.MEDIA_COPY_MAX_SIDE))
    preview = decoded.image.copy()
    preview.thumbnail((160, 160))
    preview = preview.filter(ImageFilter.GaussianBlur(radius=max(4, max(preview.size) // 12)))
    copy_name = storage.save(f"media/{stem[:2]}/{stem}.jpg", ContentFile(_jpeg(copy)))
    preview_name = storage.save(f"media/{stem[:2]}/{stem}-preview.jpg", ContentFile(_jpeg(preview)))
    return copy_name, preview_name


def media_token(asset_id: int, variant: str) -> str:
    return signing.dumps({"a": asset_id, "v": variant}, salt=SIGNING_SALT, compress=False)


def media_token_read(token: str) -> tuple[int, str]:
    """(asset id, variant) of a token signed here less than MEDIA_LINK_MAX_AGE seconds ago, else BadSignature."""
    data = signing.loads(token, salt=SIGNING_SALT, max_age=settings.MEDIA_LINK_MAX_AGE)
    if not isinstance(data, dict) or data.get("v") not in VARIANTS or not isinstance(data.get("a"), int):
        raise signing.BadSignature("malformed media token")
    return data["a"], data["v"]
