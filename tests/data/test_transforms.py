"""Training / evaluation transforms: shapes, padding, crop rule, paired geometry, seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from semantic_anchors.data import build_dataset, build_transforms
from semantic_anchors.data.transforms import random_crop_box


def _pair(h=40, w=50, channels=3):
    image = torch.randint(0, 256, (channels, h, w), dtype=torch.uint8)
    target = torch.randint(0, 5, (h, w))
    return image, target


def test_segmentation_train_output_and_padding():
    torch.manual_seed(0)
    t = build_transforms("segmentation", "train", crop_size=(64, 72), scale_range=(0.5, 0.5))
    image, target = t(*_pair())
    assert image.shape == (3, 64, 72) and image.dtype == torch.float32
    assert target.shape == (64, 72) and target.dtype == torch.int64
    # 40x50 at scale 0.5 -> 20x25: the rest is padding (image 0, mask ignore)
    assert torch.all(target[20:] == 255) and torch.all(target[:, 25:] == 255)
    assert torch.all(image[:, 20:] == 0) and torch.all(target[:20, :25] < 5)


@pytest.mark.parametrize(("scale", "min_agreement"), [((1.0, 1.0), 1.0), ((0.5, 2.0), 0.8)])
def test_segmentation_geometry_keeps_image_and_mask_paired(scale, min_agreement):
    # the image encodes its mask, so crops / flips / rescales must move both the same way (a
    # rescale blends image values only along the class borders)
    torch.manual_seed(1)
    target = torch.zeros(48, 48, dtype=torch.long)
    target[:, 24:] = 1
    target[10:20, 5:15] = 2
    image = (target * 100).to(torch.uint8).expand(3, -1, -1).contiguous()
    t = build_transforms(
        "segmentation", "train", crop_size=32, scale_range=scale, photometric=False,
        mean=(0, 0, 0), std=(1 / 255,) * 3,
    )  # fmt: skip
    for _ in range(20):
        out, mask = t(image, target)
        valid = mask != 255
        agree = out[0][valid].round() == (mask[valid] * 100).float()
        assert agree.float().mean() >= min_agreement


def test_cat_max_ratio_redraws_dominated_crops():
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[:, 50:] = 1  # a 50x50 crop is acceptable only when it starts in columns 13..37

    def acceptable_share(ratio):
        rng = random.Random(0)
        ok = 0
        for _ in range(200):
            top, left, h, w = random_crop_box(mask, (50, 50), rng, cat_max_ratio=ratio)
            ok += np.bincount(mask[top : top + h, left : left + w].ravel()).max() < 0.75 * h * w
        return ok / 200

    assert acceptable_share(1.0) < 0.6  # no rule: about 25 / 51 of the crops
    assert acceptable_share(0.75) > 0.97  # 10 draws: 1 - (26 / 51) ** 10
    # an all-one-class mask can never satisfy the rule: the last draw is kept, clipped to the image
    assert random_crop_box(np.zeros((40, 60), np.uint8), (50, 50), random.Random(0))[2:] == (40, 50)


def test_segmentation_val_normalizes_only():
    image, target = _pair(10, 12)
    t = build_transforms("segmentation", "val", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out, mask = t(image, target)
    expected = (image.float() / 255 - 0.5) / 0.25
    assert torch.allclose(out, expected, atol=1e-5) and torch.equal(mask, target)
    resized, small = build_transforms("segmentation", "val", base_size=(6, 5))(image, target)
    assert resized.shape == (3, 5, 6) and small.shape == (5, 6)


def test_classification_transforms():
    torch.manual_seed(0)
    grey = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    t = build_transforms("classification", "train", mean=(0.286,), std=(0.353,))
    out, target = t(grey, 3)
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32 and target == 3
    rgb = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    out, _ = build_transforms("classification", "train", crop_size=32, padding=4)(rgb, 0)
    assert out.shape == (3, 32, 32)
    out, _ = build_transforms("classification", "train", crop_size=24, random_resized_crop=True)(
        rgb, 0
    )
    assert out.shape == (3, 24, 24)
    out, _ = build_transforms("classification", "val", resize=36, crop_size=30)(rgb, 0)
    assert out.shape == (3, 30, 30)
    out, _ = build_transforms("classification", "val", mean=(0, 0, 0), std=(1, 1, 1))(rgb, 0)
    assert torch.allclose(out, rgb.float() / 255, atol=1e-6)


def test_reproducible_under_manual_seed():
    pair = _pair()

    def run():
        torch.manual_seed(5)
        t = build_transforms("segmentation", "train", crop_size=32)
        return [t(*pair)[0] for _ in range(3)]

    a, b = run(), run()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])


def test_workers_draw_different_augmentations():
    ds = build_dataset("synthlt", split="val", num_images=4)
    ds.transform = build_transforms("segmentation", "train", crop_size=64, mean=ds.mean, std=ds.std)

    class Same(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return ds[0]  # the same item everywhere

    torch.manual_seed(0)
    batches = [x for x, _ in DataLoader(Same(), batch_size=2, num_workers=2)]
    assert not torch.equal(batches[0][0], batches[1][0])  # worker 0 vs worker 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "detection"}, "task"),
        ({"task": "segmentation", "split": "dev"}, "split"),
        ({"task": "segmentation"}, "crop_size"),
        ({"task": "segmentation", "crop_size": 0}, "crop_size"),
        ({"task": "segmentation", "crop_size": 8, "cat_max_ratio": 0}, "cat_max_ratio"),
        ({"task": "classification", "mean": (0.5,), "std": (0.5, 0.5)}, "mean"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_transforms(**kwargs)


def test_bad_image_input():
    t = build_transforms("segmentation", "val")
    with pytest.raises(ValueError, match="uint8"):
        t(torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.long))


def test_seed_albumentations_keeps_transforms_independent():
    import albumentations as A

    from semantic_anchors.data.transforms import seed_albumentations

    compose = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    image = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    outcomes = []
    for seed in range(200):  # re-seeded for every sample, as a per-sample seeded loader does
        seed_albumentations(compose, seed)
        out = compose(image=image)["image"][:, :, 0]
        outcomes.append((bool(out[0, 0] in (1, 3)), bool(out[0, 0] in (2, 3))))  # (h-flip, v-flip)
    exactly_one = sum(h != v for h, v in outcomes) / len(outcomes)
    assert 0.35 < exactly_one < 0.65  # independent fair coins; same-seeded streams would give 0


def test_a_fresh_classification_transform_augments_its_first_image_as_a_running_one():
    """Resume: the first sample a new transform serves equals that sample in a running one."""
    from semantic_anchors.data.transforms.classification import ClassificationTransform

    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    running = ClassificationTransform(train=True, mean=(0.5,), std=(0.5,))
    seen = []
    for seed in range(6):
        torch.manual_seed(1000 + seed)  # SeededDataset seeds each sample like this
        seen.append(running(image, 0)[0])
    for seed in range(6):
        fresh = ClassificationTransform(train=True, mean=(0.5,), std=(0.5,))
        torch.manual_seed(1000 + seed)
        assert torch.equal(fresh(image, 0)[0], seen[seed]), f"sample {seed}"


def test_label_maps_of_several_channels_move_together():
    """A (2, H, W) target (semantic labels, instance ids) gets the semantic channel of the
    (H, W) path bitwise, and the second channel the same geometry."""
    from semantic_anchors.data.transforms.segmentation import (
        SegmentationTrainTransform,
        SegmentationValTransform,
    )

    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8, generator=g)
    semantic = torch.randint(0, 5, (50, 70), generator=g)
    instance = (semantic * 7 + 3) % 11  # a function of the class: checkable after any geometry
    for make in (
        lambda: SegmentationTrainTransform(crop_size=64, mean=(0.5,) * 3, std=(0.2,) * 3),
        lambda: SegmentationValTransform(mean=(0.5,) * 3, std=(0.2,) * 3, base_size=(90, 40)),
    ):
        torch.manual_seed(5)
        img_one, one = make()(image, semantic)
        torch.manual_seed(5)
        img_two, two = make()(image, torch.stack([semantic, instance]))
        assert two.shape == (2, *one.shape)
        assert torch.equal(one, two[0]) and torch.equal(img_one, img_two)
        kept = two[0] != 255  # padding is ignored in both channels
        assert torch.equal(two[1][kept], (two[0][kept] * 7 + 3) % 11)
