"""find_classifier on look-alikes of other libraries' models (``tests/_helpers/layouts.py``)."""

import pytest
from torch import nn

from semantic_anchors import FeatureCapture, find_classifier
from tests._helpers.layouts import (
    LAYOUTS,
    EncoderDecoder,
    ResNet,
    SMPUnet,
    UperNetForSemanticSegmentation,
    VisionTransformer,
    fcn,
)

TRIED = (
    "get_classifier()",
    "'decode_head.classifier'",
    "'decode_head.conv_seg'",
    "'decode_head.-1.conv_seg'",
    "'segmentation_head'",
    "'classifier'",
    "'head.fc'",
    "'fc'",
    "'head'",
    "'conv_seg'",
)


@pytest.mark.parametrize("name", LAYOUTS)
def test_find_classifier_knows_common_layouts(name):
    builder, classifier_path, hooked_path = LAYOUTS[name]
    model = builder()
    assert find_classifier(model) is model.get_submodule(classifier_path)
    capture = FeatureCapture(model)
    assert capture.classifier is model.get_submodule(classifier_path)
    assert capture.hooked_module is model.get_submodule(hooked_path)


def test_main_head_wins_over_auxiliary_heads():
    upernet, fcn_model, smp, mmseg = UperNetForSemanticSegmentation(), fcn(), SMPUnet(), EncoderDecoder()  # fmt: skip
    assert find_classifier(upernet) is not upernet.auxiliary_head.classifier
    assert find_classifier(fcn_model) is not fcn_model.aux_classifier[4]
    assert find_classifier(smp) is not smp.classification_head[3]
    assert find_classifier(mmseg) is not mmseg.auxiliary_head.conv_seg


def test_wrappers_are_looked_through():
    model = ResNet()
    assert find_classifier(nn.DataParallel(model)) is model.fc
    assert FeatureCapture(nn.DataParallel(model)).classifier is model.fc


def test_failure_lists_every_path_tried_in_order():
    with pytest.raises(ValueError, match=r"could not find the final classifier of Sequential") as info:  # fmt: skip
        find_classifier(nn.Sequential(nn.ReLU()))
    message = str(info.value)
    positions = [message.index(tried) for tried in TRIED]
    assert positions == sorted(positions)
    assert "get_classifier() (no such method)" in message
    assert "'fc' (missing)" in message
    assert "pass `classifier=`" in message


def test_headless_models_say_why_each_candidate_was_rejected():
    with pytest.raises(ValueError) as info:
        find_classifier(VisionTransformer(num_classes=0))
    message = str(info.value)
    assert "get_classifier() (nn.Identity)" in message
    assert "'head' (nn.Identity)" in message
    assert all(tried in message for tried in TRIED)
    odd = nn.Module()
    odd.head = nn.Sequential(nn.ReLU())
    with pytest.raises(ValueError, match=r"'head' \(Sequential without Linear / Conv\)"):
        find_classifier(odd)
