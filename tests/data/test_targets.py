"""Instance targets: masks, boxes, the Mask2Former / DETR formats, the dataset wrapper, collate."""

from __future__ import annotations

import pytest
import torch

from semantic_anchors.data import build_dataset, build_transforms
from semantic_anchors.data.instances import MIN_INSTANCE_PIXELS
from semantic_anchors.data.targets import (
    InstanceTargets,
    collate_instances,
    detr_target,
    instance_masks,
    mask2former_target,
    masks_to_boxes,
    semantic_from_instances,
)
from tests._helpers.references import slow_instances


def hand_made():
    """Three instances: id 1 (label 4) 20 px, id 2 (label 1) 3 px, id 3 (label 9) one pixel,
    background elsewhere and two padded (255) pixels."""
    ids = torch.zeros(8, 10, dtype=torch.uint8)
    ids[1:5, 2:7] = 1  # 4 x 5 = 20 px
    ids[6, 0:3] = 2
    ids[7, 9] = 3
    ids[0, 0:2] = 255
    return ids, torch.tensor([4, 1, 9])


def random_scene(seed: int):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 5, (12, 9), generator=generator, dtype=torch.uint8)
    ids[torch.rand(12, 9, generator=generator) < 0.5] = 0
    return ids, torch.randint(1, 11, (4,), generator=generator)


def test_drop_rule():
    ids, classes = hand_made()
    masks, labels = instance_masks(ids, classes)
    assert MIN_INSTANCE_PIXELS == 16 and labels.tolist() == [4] and masks.shape == (1, 8, 10)
    masks, labels = instance_masks(ids, classes, min_pixels=3)
    assert labels.tolist() == [4, 1] and masks.dtype == torch.bool
    masks, labels = instance_masks(ids, classes, min_pixels=1)
    assert labels.tolist() == [4, 1, 9] and masks.sum((1, 2)).tolist() == [20, 3, 1]
    assert not masks[:, 0, 0:2].any()  # 255 belongs to no instance


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("min_pixels", [1, 6])
def test_boxes_equal_a_per_pixel_loop(seed, min_pixels):
    ids, classes = random_scene(seed)
    masks, labels = instance_masks(ids, classes, min_pixels)
    expected = slow_instances(ids.tolist(), classes.tolist(), min_pixels)
    assert labels.tolist() == [label for label, _, _ in expected]
    assert masks.sum((1, 2)).tolist() == [n for _, n, _ in expected]
    assert masks_to_boxes(masks).tolist() == [list(map(float, box)) for _, _, box in expected]


def test_boxes_of_the_hand_made_case():
    ids, classes = hand_made()
    masks, _ = instance_masks(ids, classes, min_pixels=1)
    assert masks_to_boxes(masks).tolist() == [[2, 1, 7, 5], [0, 6, 3, 7], [9, 7, 10, 8]]
    assert masks_to_boxes(torch.zeros(0, 8, 10, dtype=torch.bool)).shape == (0, 4)


def test_mask2former_target():
    ids, classes = hand_made()
    target = mask2former_target(ids, classes, min_pixels=1)
    masks, labels = target["mask_labels"], target["class_labels"]
    assert masks.dtype == torch.float32 and masks.shape == (4, 8, 10)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 4, 1, 9]
    # the segments cover every pixel once, except the padding, and give back the semantic map
    assert masks.sum(0).tolist() == (ids != 255).float().tolist()
    semantic = semantic_from_instances(ids, classes)
    assert torch.equal(labels[masks.argmax(0)][ids != 255], semantic[ids != 255])
    assert masks[0].sum() == 80 - 20 - 3 - 1 - 2
    no_stuff = mask2former_target(ids, classes, background=False)
    assert no_stuff["class_labels"].tolist() == [4] and no_stuff["mask_labels"].shape == (1, 8, 10)


def test_images_without_instances():
    background = torch.zeros(6, 7, dtype=torch.uint8)
    none = torch.zeros(0, dtype=torch.long)
    only_stuff = mask2former_target(background, none)
    assert only_stuff["class_labels"].tolist() == [0]
    assert only_stuff["mask_labels"].shape == (1, 6, 7)
    for ids in (background, torch.full((6, 7), 255, dtype=torch.uint8)):
        empty = mask2former_target(ids, none, background=ids[0, 0] == 255)
        assert empty["mask_labels"].shape == (0, 6, 7)
        assert empty["mask_labels"].dtype == torch.float32
        assert empty["class_labels"].shape == (0,) and empty["class_labels"].dtype == torch.int64
        detr = detr_target(ids, none)
        assert detr["boxes"].shape == (0, 4) and detr["boxes"].dtype == torch.float32
        assert detr["class_labels"].shape == (0,) and detr["class_labels"].dtype == torch.int64
    dropped = detr_target(*hand_made(), min_pixels=100)  # instances, all below the rule
    assert dropped["boxes"].shape == (0, 4)


def test_detr_target_is_normalised_cxcywh():
    ids, classes = hand_made()
    target = detr_target(ids, classes, min_pixels=1)
    assert target["class_labels"].tolist() == [4, 1, 9]
    expected = [[4.5 / 10, 3 / 8, 5 / 10, 4 / 8], [1.5 / 10, 6.5 / 8, 3 / 10, 1 / 8]]
    expected.append([9.5 / 10, 7.5 / 8, 1 / 10, 1 / 8])
    assert torch.allclose(target["boxes"], torch.tensor(expected))
    assert target["boxes"].dtype == torch.float32


def test_semantic_from_instances():
    ids, classes = hand_made()
    semantic = semantic_from_instances(ids, classes)
    assert semantic.dtype == torch.int64 and semantic[0, :3].tolist() == [255, 255, 0]
    assert semantic[2, 3] == 4 and semantic[6, 1] == 1 and semantic[7, 9] == 9  # all kept here


def test_bad_input():
    with pytest.raises(ValueError, match=r"`ids` must be an integer tensor \(H, W\)"):
        instance_masks(torch.zeros(2, 3, 3, dtype=torch.uint8), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"`classes` must be an integer tensor"):
        detr_target(torch.zeros(3, 3, dtype=torch.uint8), torch.tensor([1.0]))


@pytest.fixture
def scenes(fashion_root):
    return build_dataset(
        "fashion-scenes-lt", root=fashion_root, num_images=12, seed=5, with_instances=True
    )


def test_wrapper_items(scenes):
    m2f = InstanceTargets(scenes, "mask2former")
    detr = InstanceTargets(scenes, "detr")
    assert len(m2f) == len(detr) == 12
    for i in range(12):
        image, target = m2f[i]
        ids, classes = scenes.instances.item(i)
        assert torch.equal(image, scenes[i][0]) and image.dtype == torch.uint8
        assert torch.equal(target["semantic"], scenes[i][1])
        assert torch.equal(target["class_labels"], mask2former_target(ids, classes)["class_labels"])
        assert torch.equal(detr[i][1]["boxes"], detr_target(ids, classes)["boxes"])
        assert set(detr[i][1]) == {"class_labels", "boxes", "semantic"}
    assert torch.equal(m2f[-1][1]["mask_labels"], m2f[11][1]["mask_labels"])
    with pytest.raises(IndexError):
        m2f[12]


def test_wrapper_transform_moves_ids_with_the_image(scenes):
    torch.manual_seed(0)
    transform = build_transforms(
        "segmentation",
        "train",
        crop_size=48,
        scale_range=(0.5, 0.5),
        mean=scenes.mean,
        std=scenes.std,
    )
    image, target = InstanceTargets(scenes, "mask2former", transform=transform)[0]
    assert image.shape == (1, 48, 48) and image.dtype == torch.float32
    assert target["mask_labels"].shape[1:] == (48, 48)
    padded = target["semantic"] == 255  # 64 px scaled by 0.5 -> 32 px, padded to 48
    assert padded.sum() == 48 * 48 - 32 * 32
    assert not target["mask_labels"][:, padded].any()
    assert (target["mask_labels"].sum(0)[~padded] <= 1).all()


def test_wrapper_needs_instances(fashion_root, scenes):
    plain = build_dataset("fashion-scenes-lt", root=fashion_root, num_images=2)
    with pytest.raises(ValueError, match="with_instances=True"):
        InstanceTargets(plain)
    with pytest.raises(ValueError, match="`format` must be one of"):
        InstanceTargets(scenes, "yolo")


def test_collate(scenes):
    batch = [InstanceTargets(scenes, "detr")[i] for i in range(4)]
    images, targets = collate_instances(batch)
    assert images.shape == (4, 1, 64, 64) and len(targets) == 4
    assert [t["boxes"].shape[0] for t in targets] == [b[1]["boxes"].shape[0] for b in batch]
    assert len({t["boxes"].shape[0] for t in targets}) > 1  # different instance counts
