"""Mask2Former as a zoo segmentor: its segments, semantic inference and own loss."""

import pytest
import torch

from semantic_anchors.models import create_model

transformers = pytest.importorskip("transformers")

from semantic_anchors.models.hf.mask2former import (  # noqa: E402
    HFMask2Former,
    segments_from_maps,
)

C = 5


def _slow_segments(targets, ignore=255):
    """Pixel by pixel: group labelled pixels by (instance id, class), stuff by class."""
    out = []
    for semantic, instance in targets.unbind(0):
        groups = {}
        for y in range(semantic.shape[0]):
            for x in range(semantic.shape[1]):
                c, k = int(semantic[y, x]), int(instance[y, x])
                if c == ignore:
                    continue
                key = ("instance", k) if k > 0 else ("stuff", c)
                groups.setdefault(key, (c, set()))[1].add((y, x))
        ordered = sorted(k for k in groups if k[0] == "instance") + sorted(
            k for k in groups if k[0] == "stuff"
        )
        out.append([(groups[k][0], groups[k][1]) for k in ordered])
    return out


def _targets():
    g = torch.Generator().manual_seed(0)
    semantic = torch.randint(0, C, (2, 12, 12), generator=g)
    instance = torch.zeros(2, 12, 12, dtype=torch.long)
    semantic[0, :4], instance[0, :4] = 3, 2  # an instance of class 3
    semantic[0, 4:6], instance[0, 4:6] = 1, 5  # one of class 1
    semantic[0, 6:8], instance[0, 6:8] = 3, 7  # a second instance of class 3
    semantic[0, 8, :6] = 255  # ignored pixels
    semantic[1] = 255  # an image without a labelled pixel
    return torch.stack([semantic, instance], dim=1)  # (B, 2, H, W)


def test_segments_match_a_pixel_loop():
    targets = _targets()
    masks, classes = segments_from_maps(targets)
    expected = _slow_segments(targets)
    for b in range(2):
        assert classes[b].tolist() == [c for c, _ in expected[b]]
        for mask, (_, pixels) in zip(masks[b], expected[b], strict=True):
            assert {tuple(p) for p in mask.nonzero().tolist()} == pixels
    assert masks[1].shape == (0, 12, 12) and classes[1].numel() == 0
    # every labelled pixel is in exactly one segment
    labelled = targets[0, 0] != 255
    assert torch.equal(masks[0].sum(0), labelled.float())


def test_pixels_of_a_too_small_instance_are_in_no_segment():
    """Id 255 (``InstanceMaps``' instances below the pixel rule) is neither an instance nor
    stuff, whatever the classes of its pixels; a dataset's maps go through unchanged."""
    targets = _targets()
    targets[0, 1, 8:10, 6:] = 255  # two classes (random labels) under the no-segment id
    masks, classes = segments_from_maps(targets)
    covered = masks[0].sum(0)
    parked = (targets[0, 1] == 255) & (targets[0, 0] != 255)
    assert parked.any() and (covered[parked] == 0).all()
    assert torch.equal(covered, ((targets[0, 0] != 255) & ~parked).float())

    from semantic_anchors.data import build_dataset
    from semantic_anchors.data.instances import InstanceMaps

    maps = InstanceMaps(build_dataset("synthlt", split="train", with_instances=True,
                                      num_images=40, seed=3))  # fmt: skip
    found = 0
    for i in range(len(maps)):
        target = maps[i][1]
        small = target[1] == 255
        if small.any():
            found += 1
            (image_masks,), _ = segments_from_maps(target[None])
            assert (image_masks.sum(0)[small] == 0).all()
    assert found > 0


def test_bad_targets_are_named():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\) targets .* got \(2, 12, 12\)"):
        segments_from_maps(_targets()[:, 0])
    bad = _targets()
    bad[0, 0, 0, 0] = 4  # instance 2 now has pixels of two classes
    with pytest.raises(ValueError, match=r"instance 2 has pixels of classes \[3, 4\]"):
        segments_from_maps(bad)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("mask2former_tiny", num_classes=C).eval()


def test_the_zoo_entry(model):
    assert isinstance(model, HFMask2Former)
    assert model.owns_loss and model.no_object and model.dense
    assert model.classifier is model.hf_model.class_predictor
    assert model.classifier.out_features == C + 1 and model.feat_dim == 64


def test_semantic_inference_equals_the_image_processor_s(model):
    """The argmax of the scores equals transformers' own semantic post-processing."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scores = model(x)
        reference = transformers.Mask2FormerImageProcessor().post_process_semantic_segmentation(
            model.hf_model(x), target_sizes=[(64, 64)] * 2
        )
    assert scores.shape == (2, C, 64, 64)
    assert torch.equal(scores.argmax(1), torch.stack(reference))


def test_the_training_loss_is_the_model_s_own(model):
    """forward_train's loss is bitwise what the transformers model computes on the segments."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    big = torch.zeros(2, 2, 64, 64, dtype=torch.long)
    big[0, 0, :20], big[0, 1, :20] = 2, 1
    big[1, 0, 30:], big[1, 1, 30:] = 4, 1
    model.train()
    torch.manual_seed(9)
    out = model.forward_train(x, big)
    masks, classes = segments_from_maps(big)
    torch.manual_seed(9)
    reference = model.hf_model(x, mask_labels=masks, class_labels=classes).loss
    model.eval()
    assert torch.equal(out.loss, reference)
    layers = model.hf_model.config.decoder_layers
    queries = model.hf_model.config.num_queries
    assert out.features.shape == (layers * 2 * queries, 64)
    # per layer: image 0 has its instance and the background stuff, image 1 the same
    assert int((out.feature_labels != 255).sum()) == layers * 4
    with pytest.raises(ValueError, match="needs targets"):
        model.forward_train(x)
