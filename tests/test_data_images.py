"""Photos and stills come out as a viewer shows them: EXIF orientation, 16-bit greyscale, transparency."""

import numpy as np
import pytest
from PIL import Image

from modules.data.flow.report import DataReport
from modules.data.flow.stages import ProbeMedia
from modules.data.media import media_io
from modules.data.media.image_io import ALPHA_BACKGROUND
from tests.media_fixtures import CORNERS, corner_names, ffmpeg, pattern

# EXIF orientation -> the stored corners (red, green, blue, yellow as TL, TR, BL, BR) as a viewer shows them.
# 3: turned 180; 6: stored turned left, shown turned 90 clockwise; 8: shown turned 90 counter-clockwise.
SHOWN_CORNERS = {
    3: ("yellow", "blue", "green", "red"),
    6: ("blue", "red", "yellow", "green"),
    8: ("green", "yellow", "red", "blue"),
}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    path = tmp_path / f"photo_{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pattern(0, 96, 64)).save(path, quality=95, exif=exif.tobytes())
    info = media_io.probe(path)
    expected_size = (64, 96) if orientation in (6, 8) else (96, 64)
    assert (info.width, info.height) == expected_size
    assert info.corrections == (f"EXIF orientation {orientation}: turned as shown",)
    [frame] = media_io.read_frames(path, [0])
    assert frame.shape == (expected_size[1], expected_size[0], 3)
    assert corner_names(frame) == SHOWN_CORNERS[orientation]


def test_an_upright_photo_is_unchanged_and_keeps_its_cache_rule(tmp_path):
    path = tmp_path / "upright.png"
    Image.fromarray(pattern(0)).save(path)
    info = media_io.probe(path)
    assert info.corrections == () and info.frame_rule == ()
    assert np.array_equal(media_io.read_frames(path, [0])[0], pattern(0))


@pytest.mark.parametrize("writer", ["pillow", "ffmpeg"])
def test_16_bit_greyscale_png_keeps_its_grey_levels(tmp_path, writer):
    path = tmp_path / "depth.png"
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (16, 1))  # 16 rows of a 64-step ramp
    if writer == "pillow":
        Image.fromarray(ramp).save(path)
    else:  # as a camera or a tool would write it: gray16be through ffmpeg
        ffmpeg(
            *("-f", "rawvideo", "-pix_fmt", "gray16le", "-s", "64x16", "-i", "-", "-frames:v", "1"),
            *("-pix_fmt", "gray16be", str(path)),
            data=ramp.astype("<u2").tobytes(),
        )
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    [frame] = media_io.read_frames(path, [0])
    expected = np.round(ramp / 257.0)
    assert np.abs(frame[..., 0].astype(float) - expected).max() <= 1
    assert len(np.unique(frame)) > 50  # not the two levels Pillow's plain RGB conversion gives
    assert np.array_equal(frame[..., 0], frame[..., 2])
    assert dict(media_io.probe(path).frame_rule) == {"bit_depth": "16"}


def transparent_disc(mode: str) -> Image.Image:
    """A red disc, opaque in the middle, half transparent in a ring, fully transparent (stored black) outside."""
    ys, xs = np.mgrid[0:48, 0:48]
    distance = np.hypot(ys - 24, xs - 24)
    alpha = np.where(distance < 12, 255, np.where(distance < 18, 128, 0)).astype(np.uint8)
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., :3] = CORNERS["red"]
    rgba[distance >= 18, :3] = 0  # what lies under transparent pixels is arbitrary
    rgba[..., 3] = alpha
    image = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        return image.convert("LA")
    if mode == "P":  # a palette with one fully transparent entry, as GIF-style PNGs have
        palette = Image.fromarray(np.where(alpha[..., None] > 0, rgba[..., :3], 0).astype(np.uint8)).quantize(4)
        transparent_index = palette.getpixel((0, 0))
        palette.info["transparency"] = transparent_index
        return palette
    return image


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(tmp_path, mode):
    path = tmp_path / f"cutout_{mode}.png"
    transparent_disc(mode).save(path, transparency=transparent_disc(mode).info.get("transparency"))
    info = media_io.probe(path)
    assert info.corrections == ("transparent areas composited on white",)
    [frame] = media_io.read_frames(path, [0])
    assert tuple(frame[0, 0]) == ALPHA_BACKGROUND == (255, 255, 255)  # outside: the background, not black
    centre = frame[24, 24].astype(int)
    if mode != "LA":
        assert np.abs(centre - CORNERS["red"]).max() <= 12  # opaque middle: the disc's colour
    if mode == "RGBA":  # half-transparent ring: half the colour, half white
        ring = frame[24, 24 + 15].astype(int)
        assert np.abs(ring - (np.array(CORNERS["red"]) * 128 + 255 * 127) / 255).max() <= 1


def test_a_fully_opaque_rgba_image_is_used_unchanged(tmp_path):
    path = tmp_path / "opaque.png"
    rgba = np.concatenate([pattern(3), np.full((64, 96, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(path)
    assert media_io.probe(path).frame_rule == ()
    assert np.array_equal(media_io.read_frames(path, [0])[0], pattern(3))


def test_image_corrections_are_reported_per_file(tmp_path):
    path = tmp_path / "cutout.png"
    transparent_disc("RGBA").save(path)
    report = DataReport()
    ProbeMedia(report).process([{"path": path}])
    assert report.corrected == {path: ["transparent areas composited on white"]}
