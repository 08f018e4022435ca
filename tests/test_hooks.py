"""FeatureCapture on look-alikes of other libraries' models, built here (nothing imported)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors import FeatureCapture, SemanticAnchorRegularizer, find_classifier


class TorchvisionLikeResNet(nn.Module):
    def __init__(self, c=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, c)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(F.relu(self.conv1(x))), 1))


class TorchvisionLikeFCN(nn.Module):
    """Like torchvision's FCNHead: Sequential(conv, bn, relu, dropout, 1x1 conv)."""

    def __init__(self, c=4):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.classifier = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
            nn.Conv2d(8, c, 1),
        )  # fmt: skip

    def forward(self, x):
        out = self.classifier(self.backbone(x))
        return {"out": F.interpolate(out, size=x.shape[-2:], mode="bilinear")}


class TimmLike(nn.Module):
    def __init__(self, c=6):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Module()
        self.head.drop = nn.Dropout(0.5)
        self.head.fc = nn.Linear(8, c)

    def get_classifier(self):
        return self.head.fc

    def forward(self, x):
        x = self.stem(x).mean((2, 3))
        return self.head.fc(self.head.drop(x))


class SMPLike(nn.Module):
    def __init__(self, c=3):
        super().__init__()
        self.encoder = nn.Conv2d(3, 8, 3, padding=1)
        self.segmentation_head = nn.Sequential(nn.Conv2d(8, c, 1), nn.Identity())

    def forward(self, x):
        return self.segmentation_head(F.relu(self.encoder(x)))


class MMSegLike(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.decode_head = nn.Module()
        self.decode_head.dropout = nn.Dropout2d(0.1)
        self.decode_head.conv_seg = nn.Conv2d(8, c, 1)

    def forward(self, x):
        feats = F.relu(self.backbone(x))
        return self.decode_head.conv_seg(self.decode_head.dropout(feats))


@pytest.mark.parametrize(
    ("model", "classifier_path", "hooked_type", "feat_shape"),
    [
        (TorchvisionLikeResNet(), "fc", nn.Linear, (2, 8)),
        (TorchvisionLikeFCN(), "classifier.4", nn.Dropout, (2, 8, 8, 8)),
        (TimmLike(), "head.fc", nn.Dropout, (2, 8)),
        (SMPLike(), "segmentation_head.0", nn.Conv2d, (2, 8, 16, 16)),
        (MMSegLike(), "decode_head.conv_seg", nn.Dropout2d, (2, 8, 4, 4)),
    ],
)
def test_capture_finds_classifier_and_pre_dropout_features(
    model, classifier_path, hooked_type, feat_shape
):
    capture = FeatureCapture(model)
    assert capture.classifier is model.get_submodule(classifier_path)
    assert type(capture.hooked_module) is hooked_type
    model.train()
    out = model(torch.randn(2, 3, 16, 16))
    logits = out["out"] if isinstance(out, dict) else out
    assert capture.features.shape == feat_shape
    if capture.hooked_module is not capture.classifier:
        # The captured tensor is the dropout's input: applying the classifier to it in eval mode
        # gives the eval-mode logits.
        model.eval()
        out_eval = model(torch.randn(2, 3, 16, 16))
        feats = capture.features
        direct = capture.classifier(feats)
        expected = out_eval["out"] if isinstance(out_eval, dict) else out_eval
        if direct.shape == expected.shape:
            torch.testing.assert_close(direct, expected)
    assert (
        logits.shape[1] == capture.classifier.out_features
        if isinstance(capture.classifier, nn.Linear)
        else capture.classifier.out_channels
    )
    capture.remove()
    model(torch.randn(2, 3, 16, 16))
    with pytest.raises(RuntimeError, match="no features captured"):
        capture.features


def test_sar_trains_through_a_captured_model():
    model = MMSegLike(c=4)
    sar = SemanticAnchorRegularizer(4, 8)
    labels = torch.randint(0, 4, (2, 16, 16))
    with FeatureCapture(model) as capture:
        logits = F.interpolate(model(torch.randn(2, 3, 16, 16)), size=(16, 16), mode="bilinear")
        loss = F.cross_entropy(logits, labels) + sar(capture.features, labels, capture.classifier)
    loss.backward()
    assert model.decode_head.conv_seg.weight.grad is not None
    assert model.backbone.weight.grad is not None


def test_explicit_paths_and_errors():
    model = TorchvisionLikeFCN()
    capture = FeatureCapture(model, classifier="classifier", features_at="classifier.3")
    assert capture.classifier is model.classifier[4]
    with pytest.raises(ValueError, match=r"`classifier` path 'decoder.cls' names no submodule"):
        FeatureCapture(model, classifier="decoder.cls")
    with pytest.raises(ValueError, match=r"could not find the final classifier of Sequential"):
        find_classifier(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match=r"`model` must be an nn.Module"):
        FeatureCapture("resnet")
