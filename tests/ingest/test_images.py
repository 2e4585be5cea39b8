"""Image validation and RGB loading on real photos and deliberately broken files."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

from embplat.errors import DataError
from embplat.ingest.images import ImageInfo, inspect_image, load_rgb, resized_pixels, to_rgb

MAX = 10_000_000


def test_good_jpeg_info(bad_images: dict[str, Path]) -> None:
    path = bad_images["good_jpeg"]
    info = inspect_image(path, max_pixels=MAX)
    assert info == ImageInfo(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        width=64,
        height=43,
        mode="RGB",
        format="JPEG",
        nbytes=path.stat().st_size,
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated_jpeg", "truncated"),
        ("zero_byte", "empty"),
        ("text_as_jpg", "not an image"),
        ("bomb_png", "decompression bomb"),
    ],
)
@pytest.mark.reliability
def test_bad_files_raise_data_error_naming_the_file(
    bad_images: dict[str, Path], name: str, reason: str
) -> None:
    path = bad_images[name]
    for call in (inspect_image, load_rgb):
        with pytest.raises(DataError, match=reason) as caught:
            call(path, max_pixels=MAX)
        assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.reliability
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as caught:
        inspect_image(tmp_path / "nope.jpg", max_pixels=MAX)
    assert str(tmp_path / "nope.jpg") in str(caught.value)


@pytest.mark.reliability
def test_truncation_detected_even_if_someone_enabled_truncated_loading(
    bad_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DataError, match="truncated"):
        inspect_image(bad_images["truncated_jpeg"], max_pixels=MAX)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.reliability
def test_pixel_limit_checked_from_header_before_decoding(
    bad_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch, imagefactory: SimpleNamespace
) -> None:
    side = imagefactory.bomb_side
    # With Pillow's own guard off, only our header check stands between us and 400 Mpx.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(DataError, match=f"{side}x{side} = {side * side} pixels exceeds the limit"):
        inspect_image(bad_images["bomb_png"], max_pixels=MAX)
    with pytest.raises(DataError, match="64x43 = 2752 pixels exceeds the limit of 1000"):
        load_rgb(bad_images["good_jpeg"], max_pixels=1000)


@pytest.mark.reliability
def test_bomb_warning_as_error_is_a_data_error(bad_images: dict[str, Path]) -> None:
    # 64x43 > Pillow's warning threshold here, below its error threshold (2x).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
        with pytest.warns(Image.DecompressionBombWarning):
            inspect_image(bad_images["good_jpeg"], max_pixels=MAX)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with pytest.raises(DataError, match="decompression bomb"):
                inspect_image(bad_images["good_jpeg"], max_pixels=MAX)


def test_exif_orientation_swaps_size_and_rotates_pixels(bad_images: dict[str, Path]) -> None:
    path = bad_images["exif_rotated_jpeg"]
    with Image.open(path) as stored:
        assert stored.size == (60, 40)
        stored_pixels = np.asarray(stored.convert("RGB"), dtype=np.float64)
    info = inspect_image(path, max_pixels=MAX)
    assert (info.width, info.height) == (40, 60)
    rgb = load_rgb(path, max_pixels=MAX)
    assert rgb.size == (40, 60)
    # Orientation 6 = displayed image is the stored one turned 90° clockwise.
    upright = np.asarray(rgb, dtype=np.float64)
    assert np.abs(upright - np.rot90(stored_pixels, k=-1)).mean() < 1.0
    assert np.abs(upright - np.rot90(stored_pixels, k=1)).mean() > 10.0


def test_unicode_name_and_duplicate_content(bad_images: dict[str, Path]) -> None:
    unicode_path = bad_images["unicode_name"]
    assert unicode_path.name == "zèbre_ü.jpg"
    hashes = {
        inspect_image(bad_images[name], max_pixels=MAX).sha256
        for name in ("unicode_name", "duplicate_a", "duplicate_b", "good_jpeg")
    }
    assert len(hashes) == 1
    assert load_rgb(unicode_path, max_pixels=MAX).size == (64, 43)


def test_bytes_input_matches_path_input(bad_images: dict[str, Path]) -> None:
    path = bad_images["good_jpeg"]
    from_path = np.asarray(load_rgb(path, max_pixels=MAX))
    from_bytes = np.asarray(load_rgb(path.read_bytes(), max_pixels=MAX))
    assert np.array_equal(from_path, from_bytes)
    with pytest.raises(DataError, match="<image bytes>: truncated"):
        load_rgb(path.read_bytes()[:500], max_pixels=MAX)


def _rgb(path: Path) -> np.ndarray:
    img = load_rgb(path, max_pixels=MAX)
    assert img.mode == "RGB"
    return np.asarray(img, dtype=np.float64)


def test_cmyk_jpeg_converts_to_matching_rgb(
    bad_images: dict[str, Path], imagefactory: SimpleNamespace
) -> None:
    assert inspect_image(bad_images["cmyk_jpeg"], max_pixels=MAX).mode == "CMYK"
    expected = np.asarray(imagefactory.photo("chelsea", 48, 32), dtype=np.float64)
    assert np.abs(_rgb(bad_images["cmyk_jpeg"]) - expected).mean() < 8.0


def test_16_bit_grey_is_scaled_not_clipped(bad_images: dict[str, Path]) -> None:
    path = bad_images["gray16_png"]
    assert inspect_image(path, max_pixels=MAX).mode == "I;16"
    with Image.open(path) as raw:
        sixteen = np.asarray(raw, dtype=np.float64)
    rgb = _rgb(path)
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    # Pillow's own convert("RGB") clips at 255 and gives a mean of ~230 for this photo.
    assert abs(rgb.mean() - sixteen.mean() / 257) < 0.6


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_wide_grey_modes_via_tiff(mode: str, imagefactory: SimpleNamespace) -> None:
    grey = np.asarray(imagefactory.gray16(), dtype=np.uint16)
    if mode == "I;16B":
        img = Image.frombytes("I;16B", (48, 48), grey.astype(">u2").tobytes())
    elif mode == "I":
        img = Image.fromarray(grey.astype(np.int32))
    else:
        img = Image.fromarray(grey)
    data = imagefactory.encode(img, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    rgb = np.asarray(load_rgb(data, max_pixels=MAX), dtype=np.float64)
    assert np.abs(rgb[..., 1] - grey / 257).max() <= 0.5 + 1e-9


def test_float_and_wide_int_fall_back_to_min_max() -> None:
    ramp = np.linspace(-1000.0, 3000.0, 64 * 8).reshape(8, 64)
    for img in (Image.fromarray(ramp.astype(np.float32)), Image.fromarray(ramp.astype(np.int32))):
        rgb = np.asarray(to_rgb(img))
        assert rgb.min() == 0 and rgb.max() == 255
        assert np.all(np.diff(rgb[0, :, 0].astype(int)) >= 0)


def test_palette_transparency_composited_on_white(bad_images: dict[str, Path]) -> None:
    path = bad_images["palette_transparent_png"]
    assert inspect_image(path, max_pixels=MAX).mode == "P"
    rgb = _rgb(path)
    assert np.all(rgb[:, :32] == 255)
    assert rgb[:, 32:].mean() < 200  # the coffee photo, not white


@pytest.mark.parametrize("name", ["rgba_png", "la_png"])
def test_alpha_composited_on_white(
    bad_images: dict[str, Path], name: str, imagefactory: SimpleNamespace
) -> None:
    rgb = _rgb(bad_images[name])
    assert np.all(rgb[:24] == 255)
    original = imagefactory.photo("astronaut", 48, 48)
    if name == "la_png":
        original = original.convert("L").convert("RGB")
    expected = np.asarray(original, dtype=np.float64)[24:]
    assert np.abs(rgb[24:] - expected).max() <= 1.0


@pytest.mark.parametrize(("name", "mode"), [("gray_png", "L"), ("bilevel_png", "1")])
def test_grey_and_bilevel_become_equal_channels(
    bad_images: dict[str, Path], name: str, mode: str
) -> None:
    assert inspect_image(bad_images[name], max_pixels=MAX).mode == mode
    rgb = _rgb(bad_images[name])
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    if mode == "1":
        assert set(np.unique(rgb)) <= {0.0, 255.0}


# --- extreme aspect ratios: refused from the header, before the encoder's resize blows up ----


def _png(tmp_path: Path, width: int, height: int) -> Path:
    path = tmp_path / f"{width}x{height}.png"
    Image.new("L", (width, height), 128).save(path, optimize=True)
    return path


@pytest.mark.reliability
def test_extreme_aspect_ratio_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _png(tmp_path, 100_000, 1)  # a few hundred bytes; 22.4 Gpx once scaled to 224 px
    assert path.stat().st_size < 1000

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels decoded before the header was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for call in (inspect_image, load_rgb):
        with pytest.raises(DataError) as caught:
            call(path, max_pixels=MAX)
        assert str(caught.value).startswith(
            f"{path}: 100000x1 has an aspect ratio of 100000:1, over the limit of 50:1"
        )


@pytest.mark.reliability
def test_aspect_limit_is_inclusive_and_adjustable(tmp_path: Path) -> None:
    assert inspect_image(_png(tmp_path, 1000, 20), max_pixels=MAX).width == 1000  # 50:1
    tall = _png(tmp_path, 20, 1020)  # 51:1
    with pytest.raises(DataError, match="aspect ratio of 51:1"):
        inspect_image(tall, max_pixels=MAX)
    assert load_rgb(tall, max_pixels=MAX, max_aspect=60).size == (20, 1020)
    with pytest.raises(DataError, match="over the limit of 4:1"):
        load_rgb(_png(tmp_path, 50, 10), max_pixels=MAX, max_aspect=4)


@pytest.mark.reliability
def test_pixels_after_the_encoder_resize_are_checked(tmp_path: Path) -> None:
    from torchvision import transforms as T

    path = _png(tmp_path, 2000, 50)
    with Image.open(path) as img:
        scaled = T.Resize(224)(img)
    assert resized_pixels(2000, 50, 224) == scaled.width * scaled.height == 224 * 8960
    assert load_rgb(path, max_pixels=1_000_000).size == (2000, 50)  # no resize given
    with pytest.raises(DataError, match="scaled to a 224-pixel short side is 2007040 pixels"):
        load_rgb(path, max_pixels=1_000_000, resize_side=224)
    assert load_rgb(path, max_pixels=3_000_000, resize_side=224).size == (2000, 50)
