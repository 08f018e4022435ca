"""FeatureCapture records only the model's own forward, on look-alikes of other libraries' models."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semantic_anchors import FeatureCapture, SemanticAnchorRegularizer, find_classifier
from tests._helpers.layouts import LAYOUTS, EncoderDecoder, fcn

SEED = 7


# The batch features each model feeds its classifier (before the dropout), computed by calling
# its submodules by hand. Dropouts before the captured point draw the same masks under SEED.
def _segformer(m, x):
    head, states = m.decode_head, m.segformer(x).hidden_states
    upsampled = []
    for state, mlp in zip(states, head.linear_c, strict=True):
        b, _, h, w = state.shape
        state = mlp(state).permute(0, 2, 1).reshape(b, -1, h, w)  # (B, D, h, w)
        upsampled.append(F.interpolate(state, size=states[0].shape[2:], mode="bilinear"))
    return head.activation(head.batch_norm(head.linear_fuse(torch.cat(upsampled[::-1], dim=1))))


def _upernet(m, x):
    x, head = F.relu(m.backbone(x)), m.decode_head
    return F.relu(head.fpn_bottleneck(head.bottleneck(torch.cat([x, head.psp_modules[0](x)], 1))))


def _convnext(m, x):
    head = m.head
    return head.pre_logits(head.flatten(head.norm(head.global_pool(m.stem(x)).permute(0, 2, 3, 1))))  # fmt: skip


def _cascade(m, x):
    x = F.relu(m.backbone(x))
    return m.decode_head[1].convs(x + 0 * m.decode_head[0](x).mean())


BATCH_FEATURES = {
    "transformers-segformer": _segformer,
    "transformers-upernet": _upernet,
    "transformers-vit": lambda m, x: m.vit(x)[0][:, 0, :],
    "torchvision-resnet": lambda m, x: torch.flatten(m.avgpool(m.relu(m.bn1(m.conv1(x)))), 1),
    "torchvision-vgg": lambda m, x: m.classifier[:5](torch.flatten(m.avgpool(m.features(x)), 1)),
    "torchvision-mobilenet": lambda m, x: torch.flatten(
        F.adaptive_avg_pool2d(m.features(x), 1), 1
    ),  # fmt: skip
    "torchvision-fcn": lambda m, x: nn.Sequential(*list(m.classifier)[:3])(m.backbone(x)["out"]),
    "torchvision-deeplabv3": lambda m, x: nn.Sequential(*list(m.classifier)[:4])(
        m.backbone(x)["out"]
    ),
    "timm-convnext": _convnext,
    "timm-vit": lambda m, x: m.fc_norm(m.norm(m.patch_embed(x).flatten(2).transpose(1, 2))[:, 0]),
    "smp-unet": lambda m, x: m.decoder(F.relu(m.encoder(x))),
    "mmseg-encoder-decoder": lambda m, x: m.decode_head.convs(F.relu(m.backbone(x))),
    "mmseg-cascade": _cascade,
}


def _logits(output):
    """The main logits of any look-alike's output (tensor, dict, tuple or ModelOutput-like)."""
    if isinstance(output, dict):
        return output["out"]
    if isinstance(output, tuple):
        return output[0]
    return getattr(output, "logits", output)


def _sar_for(capture):
    dense = isinstance(capture.classifier, nn.Conv2d)
    layer = capture.classifier
    num_classes = layer.out_channels if dense else layer.out_features
    feat_dim = layer.in_channels if dense else layer.in_features
    return SemanticAnchorRegularizer(num_classes, feat_dim, dense=dense), dense, num_classes


@pytest.mark.parametrize("name", LAYOUTS)
def test_features_after_sar_are_the_batch_features(name):
    builder, _, _ = LAYOUTS[name]
    model = builder().train()
    capture = FeatureCapture(model)
    sar, dense, num_classes = _sar_for(capture)
    x = torch.randn(2, 3, 16, 16)
    labels = torch.randint(0, num_classes, (2, 16, 16) if dense else (2,))
    torch.manual_seed(SEED)
    logits = _logits(model(x))
    if dense:
        logits = F.interpolate(logits, size=(16, 16), mode="bilinear")
    # SAR runs the classifier (the hooked module, for some layouts) on its (C, D) anchors, twice.
    loss = F.cross_entropy(logits, labels) + sar(capture.features, labels, capture.classifier)
    loss = loss + sar(capture.features, labels, capture.classifier)
    loss.backward()
    assert all(p.grad is not None for p in sar.parameters())
    torch.manual_seed(SEED)
    with torch.no_grad():
        expected = BATCH_FEATURES[name](model, x)
    assert capture.features.shape == expected.shape
    assert capture.features.shape[0] == 2 and capture.features.dim() == (4 if dense else 2)
    assert torch.equal(capture.features, expected)
    assert not capture.recording


@pytest.mark.parametrize("name", ["torchvision-resnet", "smp-unet", "transformers-segformer", "timm-vit"])  # fmt: skip
def test_calls_outside_the_forward_do_not_overwrite(name):
    model = LAYOUTS[name][0]().train()
    capture = FeatureCapture(model)
    model(torch.randn(2, 3, 16, 16))
    before = capture.features
    layer = capture.classifier
    width = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
    shape = (5, width, 1, 1) if isinstance(layer, nn.Conv2d) else (5, width)
    layer(torch.randn(shape))  # a user (or another regularizer) calling the classifier
    capture.hooked_module(torch.randn(shape))  # ... or the dropout before it
    capture.classifier.forward(torch.randn(shape))
    assert capture.features is before


def test_recording_window_is_the_model_forward_only():
    model = EncoderDecoder()
    capture = FeatureCapture(model)
    seen = []
    model.decode_head.conv_seg.register_forward_pre_hook(
        lambda m, a: seen.append(capture.recording)
    )
    model(torch.randn(1, 3, 16, 16))
    capture.classifier(torch.randn(4, 8, 1, 1))
    assert seen == [True, False]
    assert not capture.recording


class MultiScale(nn.Module):
    """Re-enters itself on a rescaled input, and can raise before or after its classifier."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x, nested=None, fail=None):
        if nested == "rescaled":
            self(0.5 * x)
        if nested == "failing":
            with pytest.raises(RuntimeError, match="after"):
                self(0.5 * x, fail="after")
        feats = torch.relu(self.body(x))  # (B, D)
        if fail == "before":
            raise RuntimeError("before")
        logits = self.fc(self.drop(feats))  # (B, C)
        if fail == "after":
            raise RuntimeError("after")
        return logits


@pytest.mark.parametrize("nested", ["rescaled", "failing"])
def test_nested_calls_keep_the_outer_batch_features(nested):
    model = MultiScale()
    capture = FeatureCapture(model)
    assert capture.hooked_module is model.drop
    x = torch.randn(6, 4)
    model(x, nested=nested)
    assert not capture.recording
    assert torch.equal(capture.features, torch.relu(model.body(x)))
    model.fc(torch.randn(3, 8))
    assert torch.equal(capture.features, torch.relu(model.body(x)))


@pytest.mark.parametrize("fail", ["before", "after"])
def test_an_exception_in_forward_closes_the_window(fail):
    model = MultiScale().eval()  # so that the classifier's input is the pre-dropout features
    capture = FeatureCapture(model, features_at="fc")  # the classifier itself is hooked
    x, y = torch.randn(6, 4), torch.randn(5, 4)
    model(y)
    with pytest.raises(RuntimeError, match=fail):
        model(x, fail=fail)
    assert not capture.recording
    if fail == "before":  # the failed forward never reached the classifier: nothing stale
        with pytest.raises(RuntimeError, match="no features captured"):
            capture.features
    model.fc(torch.randn(3, 8))  # a classifier call after the failure is not recorded
    if fail == "after":
        assert torch.equal(capture.features, torch.relu(model.body(x)))
    model(y)
    assert torch.equal(capture.features, torch.relu(model.body(y)))


def test_a_failing_hook_of_the_model_closes_the_window():
    model = MultiScale()
    capture = FeatureCapture(model)

    def refuse(module, args):
        raise RuntimeError("refused")

    handle = model.register_forward_pre_hook(refuse)
    with pytest.raises(RuntimeError, match="refused"):
        model(torch.randn(2, 4))
    handle.remove()
    assert not capture.recording


def test_paused_keeps_the_training_features():
    model = MultiScale()
    capture = FeatureCapture(model)
    x, x_val = torch.randn(6, 4), torch.randn(2, 4)
    model(x)
    with capture.paused() as same:
        assert same is capture
        model(x_val)
        assert not capture.recording
    assert torch.equal(capture.features, torch.relu(model.body(x)))
    model(x_val)
    assert torch.equal(capture.features, torch.relu(model.body(x_val)))


def test_only_calls_of_the_model_itself_are_recorded():
    model = MultiScale()
    capture = FeatureCapture(model)
    model.forward(torch.randn(2, 4))  # bypasses the model's hooks, so it opens no window
    with pytest.raises(RuntimeError, match=r"run a forward pass of the model as `model\(x\)`"):
        capture.features


def test_remove_detaches_every_hook():
    model = EncoderDecoder()
    counts = (len(model._forward_pre_hooks), len(model._forward_hooks))
    capture = FeatureCapture(model)
    capture.remove()
    assert (len(model._forward_pre_hooks), len(model._forward_hooks)) == counts
    assert not capture.hooked_module._forward_pre_hooks
    model(torch.randn(1, 3, 16, 16))
    with pytest.raises(RuntimeError, match="no features captured"):
        capture.features


def test_sar_trains_through_a_captured_model():
    model = EncoderDecoder(num_classes=4).train()
    sar = SemanticAnchorRegularizer(4, 8)
    labels = torch.randint(0, 4, (2, 16, 16))
    with FeatureCapture(model) as capture:
        out, _ = model(torch.randn(2, 3, 16, 16))
        logits = F.interpolate(out, size=(16, 16), mode="bilinear")
        loss = F.cross_entropy(logits, labels) + sar(capture.features, labels, capture.classifier)
    loss.backward()
    assert model.decode_head.conv_seg.weight.grad is not None
    assert model.backbone.weight.grad is not None


def test_explicit_paths_and_errors():
    model = fcn()
    capture = FeatureCapture(model, classifier="classifier", features_at="classifier.3")
    assert capture.classifier is model.classifier[4]
    assert FeatureCapture(model, classifier=model.classifier).classifier is model.classifier[4]
    with pytest.raises(ValueError, match=r"`classifier` path 'decoder.cls' names no submodule"):
        FeatureCapture(model, classifier="decoder.cls")
    with pytest.raises(ValueError, match=r"`features_at` path 'decoder' names no submodule"):
        FeatureCapture(model, features_at="decoder")
    with pytest.raises(ValueError, match=r"contains no nn.Linear / nn.Conv2d layer"):
        find_classifier(model, classifier=nn.ReLU())
    with pytest.raises(TypeError, match=r"`classifier` must be an nn.Module, a str path or None"):
        find_classifier(model, classifier=3)
    with pytest.raises(ValueError, match=r"`model` is its own classifier \(Linear\)"):
        linear = nn.Linear(4, 3)
        FeatureCapture(linear, classifier=linear)
    with pytest.raises(TypeError, match=r"`model` must be an nn.Module"):
        FeatureCapture("resnet")
