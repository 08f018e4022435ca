import pytest
import torch
from torch import nn

from semantic_anchors.inference import predict_logits, slide_logits


class PixelwiseModel(nn.Module):
    """1x1 convs only: a window's logits equal the whole image's logits at the same pixels."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1))

    def forward(self, x):
        return self.net(x)


class PositionModel(nn.Module):
    """Logits depend on the position inside the window: exposes the averaging."""

    def forward(self, x):
        b, _, h, w = x.shape
        ramp = torch.arange(w, dtype=torch.float32).expand(b, 1, h, w)
        return torch.cat([ramp, -ramp], dim=1)


def slow_slide(model, image, num_classes, crop, stride):
    _, _, h, w = image.shape
    total = torch.zeros(1, num_classes, h, w)
    count = torch.zeros(1, 1, h, w)
    ys = list(range(0, max(h - crop, 0) + 1, stride))
    xs = list(range(0, max(w - crop, 0) + 1, stride))
    if ys[-1] + crop < h:
        ys.append(h - crop)
    if xs[-1] + crop < w:
        xs.append(w - crop)
    for y in ys:
        for x in xs:
            total[:, :, y : y + crop, x : x + crop] += model(
                image[:, :, y : y + crop, x : x + crop]
            )
            count[:, :, y : y + crop, x : x + crop] += 1
    return total / count


def test_slide_equals_whole_for_a_pixelwise_model():
    model, image = PixelwiseModel(), torch.randn(2, 3, 23, 37)
    torch.testing.assert_close(slide_logits(model, image, 4, 8, 5), model(image))


@pytest.mark.parametrize(("crop", "stride"), [(8, 5), (10, 10), (16, 3)])
def test_slide_matches_slow_window_loop(crop, stride):
    image = torch.randn(1, 3, 20, 29)
    got = slide_logits(PositionModel(), image, 2, crop, stride)
    torch.testing.assert_close(got, slow_slide(PositionModel(), image, 2, crop, stride))


def test_image_smaller_than_crop_runs_whole():
    image = torch.randn(1, 3, 6, 7)
    torch.testing.assert_close(
        predict_logits(PositionModel(), image, "slide", num_classes=2, crop_size=16, stride=8),
        PositionModel()(image),
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="`mode` must be 'whole' or 'slide', got 'tiles'"):
        predict_logits(PixelwiseModel(), torch.randn(1, 3, 4, 4), "tiles")
    with pytest.raises(ValueError, match="slide inference needs `crop_size`"):
        predict_logits(PixelwiseModel(), torch.randn(1, 3, 4, 4), "slide", num_classes=4)
    with pytest.raises(ValueError, match="`stride` must be a positive int"):
        slide_logits(PixelwiseModel(), torch.randn(1, 3, 4, 4), 4, 2, 0)
