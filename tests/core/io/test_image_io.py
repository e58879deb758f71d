"""decode_upload: every odd or hostile upload becomes an ImageInputError; valid ones become RGB uint8."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.io.image_input import ImageInputError
from core.io.image_io import _to_rgb, decode_upload


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gradient(w: int = 40, h: int = 30) -> np.ndarray:
    """RGB image whose three channels differ everywhere: red rises left to right, green top to
    bottom, blue falls left to right, so any channel swap or mirror changes the pixels."""
    x = np.tile(np.linspace(0, 255, w), (h, 1))
    y = np.tile(np.linspace(0, 255, h)[:, None], (1, w))
    return np.dstack([x, y, 255 - x]).round().astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a huge size (the classic decompression bomb header), no real pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 16)
    idat_chunk = b"IDAT" + idat
    body += struct.pack(">I", len(idat)) + idat_chunk + struct.pack(">I", zlib.crc32(idat_chunk))
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp")])
def test_formats_decode_to_rgb_uint8(fmt: str, ext: str) -> None:
    rgb = gradient()
    out = decode_upload(encode(Image.fromarray(rgb), fmt), f"x.{ext}")
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    error = np.abs(out.astype(int) - rgb.astype(int))
    if fmt in ("PNG", "BMP"):
        assert error.max() == 0
    else:  # lossy; swapping red and blue would put the mean error near 127
        assert error.mean() < 6, error.mean()


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "RGBA"])
def test_modes_are_converted(mode: str) -> None:
    img = Image.fromarray(gradient()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_upload(encode(img, fmt), "x.jpg" if fmt == "JPEG" else "x.png")
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_rgba_transparent_pixels_become_white() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    out = decode_upload(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert (out == 255).all()


def test_16bit_grayscale_keeps_top_bits() -> None:
    arr = np.array([[0, 256, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)  # mode I;16
    assert img.mode.startswith("I;16")
    out = decode_upload(encode(img, "PNG"), "deep.png")
    assert out.shape == (1, 3, 3) and out[0, :, 0].tolist() == [0, 1, 255]


def test_32bit_int_mode() -> None:
    img = Image.fromarray(np.array([[0, 65535, 70000]], dtype=np.int32), mode="I")
    out = _to_rgb(img, "i.png")  # no supported format writes mode I without a deprecation warning
    assert out[0, :, 0].tolist() == [0, 255, 255]


QUADRANT_COLOURS = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 0)}
# Where each stored corner is displayed (EXIF 2.3, tag 0x0112): 6 = the stored top row becomes the
# right-hand column (rotate 90 degrees clockwise to view), 8 = it becomes the left-hand column.
DISPLAYED_AT = {
    6: {"tl": "tr", "tr": "br", "br": "bl", "bl": "tl"},
    8: {"tl": "bl", "bl": "br", "br": "tr", "tr": "tl"},
}


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_puts_each_corner_where_it_belongs(orientation: int) -> None:
    height, width = 30, 40
    stored = np.zeros((height, width, 3), np.uint8)
    stored[:15, :20], stored[:15, 20:] = QUADRANT_COLOURS["tl"], QUADRANT_COLOURS["tr"]
    stored[15:, :20], stored[15:, 20:] = QUADRANT_COLOURS["bl"], QUADRANT_COLOURS["br"]
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = decode_upload(encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95), "photo.jpg")
    assert out.shape == (width, height, 3)
    corner_pixel = {"tl": out[2, 2], "tr": out[2, -3], "bl": out[-3, 2], "br": out[-3, -3]}
    for source, shown in DISPLAYED_AT[orientation].items():
        np.testing.assert_allclose(corner_pixel[shown], QUADRANT_COLOURS[source], atol=40, err_msg=f"{source}->{shown}")


@pytest.mark.parametrize(
    "data,name,needle",
    [
        (b"", "empty.png", "empty"),
        (b"hello, I am a text file\n" * 10, "notes.png", "not an image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "doc.png", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "garbage.png", "image"),
        (b"GIF89a" + b"\x00" * 20, "anim.gif", "unsupported file type"),
        (b"data", "noext", "unsupported file type"),
    ],
)
def test_bad_bytes_raise_clear_error(data: bytes, name: str, needle: str) -> None:
    with pytest.raises(ImageInputError, match=needle):
        decode_upload(data, name)


def test_truncated_file() -> None:
    data = encode(Image.fromarray(gradient(200, 200)), "JPEG")
    with pytest.raises(ImageInputError, match="truncated|corrupt"):
        decode_upload(data[: len(data) // 2], "half.jpg")
    data = encode(Image.fromarray(gradient(200, 200)), "PNG")
    with pytest.raises(ImageInputError, match="truncated|corrupt"):
        decode_upload(data[: len(data) // 2], "half.png")


def test_gif_bytes_renamed_png_rejected_as_unsupported() -> None:
    data = encode(Image.fromarray(gradient()).convert("P"), "GIF")
    with pytest.raises(ImageInputError, match="GIF images are not supported"):
        decode_upload(data, "sneaky.png")


def test_size_cap() -> None:
    data = encode(Image.fromarray(gradient()), "PNG")
    with pytest.raises(ImageInputError, match="upload limit"):
        decode_upload(data, "x.png", max_bytes=len(data) - 1)


@pytest.mark.parametrize("side", [8000, 100_000])  # over our 40 MP limit; the second is over Pillow's bomb limit
def test_decompression_bomb_refused_from_header(side: int) -> None:
    """Both are refused with the app's own limit in the message, never Pillow's (89,478,485 / 178,956,970)."""
    with pytest.raises(ImageInputError, match="decompression bomb") as info:
        decode_upload(png_header_only(side, side), "bomb.png")
    message = str(info.value)
    assert f"{side * side:,} pixels is over the upload pixel limit of 40,000,000 pixels (40 MP)" in message
    assert "178956970" not in message and "89478485" not in message


def test_pixel_limit_parameter() -> None:
    with pytest.raises(ImageInputError, match="pixel limit"):
        decode_upload(encode(Image.fromarray(gradient()), "PNG"), "x.png", max_pixels=100)


def test_jpeg_named_png_is_fine() -> None:
    out = decode_upload(encode(Image.fromarray(gradient()), "JPEG"), "actually_jpeg.png")
    assert out.shape == (30, 40, 3)
