"""Preprocessing (the authors' eval transform), class names, sample photos."""

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
