"""Preprocessing (the authors' eval transform), class names, sample photos."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

import emo
from emo.data import IMAGENET_MEAN, IMAGENET_STD, imagenet_labels, sample_images, to_unit_array


def test_labels_are_imagenet_1k():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert labels[0] == "tench" and labels[281] == "tabby cat" and labels[999] == "toilet paper"


def test_sample_photos_ship_with_the_package():
    names = [p.name for p in sample_images()]
    assert names == ["astronaut.jpg", "cat.jpg", "coffee.jpg", "rocket.jpg"]


def test_preprocess_resizes_crops_and_normalises():
    # a left-to-right ramp: after the centre crop the columns keep their order and the normalisation is exact
    ramp = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    image = Image.fromarray(np.stack([ramp] * 3, axis=-1))
    x = emo.preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    unit = to_unit_array(image)
    assert unit.min() >= 0 and unit.max() <= 1
    expected = (unit - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6)
    assert np.all(np.diff(unit[0, 100]) >= -1e-6)


def test_shorter_side_resized_to_256_then_centre_crop():
    image = Image.new("RGB", (512, 300), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 40, 300))  # a blue band on the left that the 224 crop must cut away
    unit = to_unit_array(image, 224)
    assert unit.shape == (3, 224, 224)
    assert unit[2].max() < 0.05  # no blue left: short side 256 -> width 436, crop starts at column 106


@pytest.mark.parametrize("size", [(200, 264), (32, 48)])
def test_non_square_sizes(size):
    assert to_unit_array(Image.new("RGB", (640, 480)), size).shape == (3, *size)


@pytest.mark.parametrize(("value", "error", "pattern"), [
    (np.zeros((8, 8, 3), dtype=np.uint8), TypeError, "PIL.Image.fromarray"),
    ("cat.jpg", TypeError, "emo.data.load_image"),
    (None, TypeError, "got NoneType"),
    (Image.new("RGB", (0, 0)), ValueError, "the image is empty (0x0 pixels)"),
])
def test_preprocess_bad_values_say_what_to_pass(value, error, pattern):
    with pytest.raises(error, match=pattern.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        emo.preprocess(value)


def test_exif_orientation_is_applied(tmp_path):
    """Phones store portrait photos landscape with EXIF orientation 6 (rotate 90 degrees clockwise to view)."""
    from emo.data import load_image

    upright = np.zeros((60, 40, 3), dtype=np.uint8)
    upright[:10] = 255  # a white band at the top of the upright picture
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as the sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "portrait.jpg", exif=exif.tobytes(), quality=95)
    loaded = np.asarray(load_image(tmp_path / "portrait.jpg"))
    assert loaded.shape == (60, 40, 3)
    assert loaded[:8].mean() > 200 and loaded[15:].mean() < 30


def test_labels_file_with_a_blank_line_in_the_middle_is_refused(tmp_path):
    from emo.data import read_labels_file

    (tmp_path / "ok.txt").write_text("cat\ndog\n\n\n")
    assert read_labels_file(tmp_path / "ok.txt") == ("cat", "dog")  # trailing blank lines are fine
    (tmp_path / "bad.txt").write_text("cat\n\ndog\n")
    with pytest.raises(emo.EMOError, match="blank line at line 2"):
        read_labels_file(tmp_path / "bad.txt")


@pytest.mark.parametrize(("name", "pattern"), [
    ("a\nb", "contains the control character U+000A"),
    ("red\x1b[31m", "contains the control character U+001B"),
    ("a\u2028b", "U+2028"),                     # str.splitlines() splits here: one label would become two
    ("a\x1cb", "U+001C"),                       # and here
    ("abc\u202ecod.exe", "U+202E (a bidirectional control"),  # right-to-left override: displays as other text
    ("a\udcffb", "U+DCFF (not valid Unicode text"),    # a folder name of undecodable bytes
    ("", "is blank"),
    ("  ", "is blank"),
    (" cat", "begins or ends with whitespace"),
    ("x" * 257, "is longer than 256 characters"),
    (3, "is not a string"),
])
def test_class_names_that_cannot_be_one_label_line_are_refused(name, pattern):
    from emo.data import check_class_name

    with pytest.raises(emo.EMOError, match=re.escape(pattern)):
        check_class_name(name)


def test_class_names_of_the_real_world_pass():
    from emo.contract.text import label_problem
    from emo.data import check_class_name, check_class_names

    for name in ("T-shirt/top", "0_t-shirt_top", "crème brûlée", "犬", "👩‍🔬 scientist", "x" * 256):
        check_class_name(name)
        assert label_problem(name) is None  # what emo-train accepts, every sidecar reader accepts
    assert check_class_names(list(imagenet_labels()), "ImageNet") == imagenet_labels()  # names repeat there: allowed
    with pytest.raises(emo.EMOError, match="holds 100001 class names"):
        check_class_names(["a"] * 100_001, "a checkpoint's classes")


def test_labels_file_lines_end_at_newline_only(tmp_path):
    from emo.data import read_labels_file

    (tmp_path / "crlf.txt").write_bytes(b"cat\r\ndog\r\n")
    assert read_labels_file(tmp_path / "crlf.txt") == ("cat", "dog")
    (tmp_path / "sep.txt").write_text("cat\u2028dog\nbird\n", encoding="utf-8")  # two lines, not three
    with pytest.raises(emo.EMOError, match=re.escape("line 1: 'cat\\u2028dog' contains the control character U+2028")):
        read_labels_file(tmp_path / "sep.txt")
    (tmp_path / "esc.txt").write_text("cat\ndog\x1b[2J\n", encoding="utf-8")
    with pytest.raises(emo.EMOError, match="line 2: 'dog.*U\\+001B"):
        read_labels_file(tmp_path / "esc.txt")
