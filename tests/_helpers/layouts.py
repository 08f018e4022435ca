"""Look-alikes of other libraries' models, built here (nothing imported).

Each look-alike keeps the real library's module names and the order in which its forward calls
them (transformers, torchvision, timm, segmentation_models_pytorch, mmseg), at toy widths.
``LAYOUTS`` maps a name to ``(builder, classifier path, path of the module whose input is
captured)``; ``tests/test_hooks_layouts.py`` runs ``find_classifier`` on them and
``tests/test_hooks.py`` runs ``FeatureCapture``.
"""

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

# --- Hugging Face transformers ----------------------------------------------------------------


class SegformerMLP(nn.Module):
    def __init__(self, input_dim, hidden_size):
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden_size)

    def forward(self, hidden_states):  # (B, Ci, h, w) -> (B, h * w, D)
        return self.proj(hidden_states.flatten(2).transpose(1, 2))


class SegformerModel(nn.Module):
    """The encoder, reduced to one strided conv per stage (`encoder.patch_embeddings`)."""

    def __init__(self, widths=(8, 16)):
        super().__init__()
        self.encoder = nn.Module()
        ins = (3, *widths[:-1])
        self.encoder.patch_embeddings = nn.ModuleList(
            nn.Conv2d(i, o, 3, stride=2, padding=1) for i, o in zip(ins, widths, strict=True)
        )

    def forward(self, pixel_values):
        hidden_states, x = (), pixel_values
        for embed in self.encoder.patch_embeddings:
            x = F.gelu(embed(x))
            hidden_states += (x,)
        return SimpleNamespace(hidden_states=hidden_states)


class SegformerDecodeHead(nn.Module):
    def __init__(self, widths=(8, 16), hidden=12, num_labels=4):
        super().__init__()
        self.linear_c = nn.ModuleList(SegformerMLP(w, hidden) for w in widths)
        self.linear_fuse = nn.Conv2d(hidden * len(widths), hidden, 1, bias=False)
        self.batch_norm = nn.BatchNorm2d(hidden)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(hidden, num_labels, 1)

    def forward(self, encoder_hidden_states):
        all_hidden_states = ()
        for state, mlp in zip(encoder_hidden_states, self.linear_c, strict=True):
            b, _, h, w = state.shape
            state = mlp(state).permute(0, 2, 1).reshape(b, -1, h, w)  # (B, D, h, w)
            size = encoder_hidden_states[0].shape[2:]
            all_hidden_states += (F.interpolate(state, size=size, mode="bilinear"),)
        hidden_states = self.linear_fuse(torch.cat(all_hidden_states[::-1], dim=1))
        hidden_states = self.batch_norm(hidden_states)
        hidden_states = self.activation(hidden_states)
        hidden_states = self.dropout(hidden_states)
        return self.classifier(hidden_states)


class SegformerForSemanticSegmentation(nn.Module):
    def __init__(self, num_labels=4):
        super().__init__()
        self.segformer = SegformerModel()
        self.decode_head = SegformerDecodeHead(num_labels=num_labels)

    def forward(self, pixel_values):
        outputs = self.segformer(pixel_values)
        return SimpleNamespace(logits=self.decode_head(outputs.hidden_states))


class UperNetHead(nn.Module):
    """UperNet's decode head, reduced to its FPN path; `psp_modules` kept for the names."""

    def __init__(self, in_channels=8, channels=10, num_labels=4):
        super().__init__()
        self.psp_modules = nn.ModuleList([nn.Conv2d(in_channels, channels, 1)])
        self.bottleneck = nn.Conv2d(in_channels + channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        self.fpn_bottleneck = nn.Conv2d(channels, channels, 3, padding=1)
        self.classifier = nn.Conv2d(channels, num_labels, kernel_size=1)

    def forward(self, feature_maps):
        x = feature_maps[-1]
        x = self.bottleneck(torch.cat([x, self.psp_modules[0](x)], dim=1))
        return self.classifier(F.relu(self.fpn_bottleneck(x)))


class UperNetFCNHead(nn.Module):
    def __init__(self, in_channels=8, channels=6, num_labels=4):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU())
        self.conv_cat = nn.Identity()
        self.classifier = nn.Conv2d(channels, num_labels, kernel_size=1)

    def forward(self, feature_maps):
        return self.classifier(self.conv_cat(self.convs(feature_maps[-1])))


class UperNetForSemanticSegmentation(nn.Module):
    def __init__(self, num_labels=4):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.decode_head = UperNetHead(num_labels=num_labels)
        self.auxiliary_head = UperNetFCNHead(num_labels=num_labels)

    def forward(self, pixel_values):
        feature_maps = (F.relu(self.backbone(pixel_values)),)
        logits = self.decode_head(feature_maps)
        return SimpleNamespace(logits=logits, auxiliary_logits=self.auxiliary_head(feature_maps))


class ViTModel(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.embeddings = nn.Conv2d(3, hidden, 4, stride=4)  # patch embeddings
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden))
        self.encoder = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        self.layernorm = nn.LayerNorm(hidden)

    def forward(self, pixel_values):
        tokens = self.embeddings(pixel_values).flatten(2).transpose(1, 2)  # (B, N, D)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        return (self.layernorm(self.encoder(tokens)),)


class ViTForImageClassification(nn.Module):
    def __init__(self, num_labels=5):
        super().__init__()
        self.vit = ViTModel()
        self.classifier = nn.Linear(8, num_labels)

    def forward(self, pixel_values):
        sequence_output = self.vit(pixel_values)[0]
        return SimpleNamespace(logits=self.classifier(sequence_output[:, 0, :]))


# --- torchvision ------------------------------------------------------------------------------


class ResNet(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.relu(self.bn1(self.conv1(x)))), 1))


class VGG(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Linear(32, 16), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(16, 16), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(16, num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class IntermediateLayerGetter(nn.ModuleDict):
    def __init__(self):
        super().__init__({"layer3": nn.Conv2d(3, 6, 3, stride=2, padding=1), "layer4": nn.Conv2d(6, 8, 3, padding=1)})  # fmt: skip

    def forward(self, x):
        aux = F.relu(self["layer3"](x))
        return {"aux": aux, "out": F.relu(self["layer4"](aux))}


class FCNHead(nn.Sequential):
    def __init__(self, in_channels, channels):
        inter = in_channels // 2
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False), nn.BatchNorm2d(inter),
            nn.ReLU(), nn.Dropout(0.1), nn.Conv2d(inter, channels, 1),
        )  # fmt: skip


class ASPP(nn.Module):
    def __init__(self, in_channels, out_channels=6):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU()),
                nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 3, padding=2, dilation=2), nn.ReLU()
                ),  # fmt: skip
            ]
        )
        self.project = nn.Sequential(
            nn.Conv2d(2 * out_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.Dropout(0.5),
        )  # fmt: skip

    def forward(self, x):
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    def __init__(self, in_channels, num_classes):
        super().__init__(
            ASPP(in_channels), nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6),
            nn.ReLU(), nn.Conv2d(6, num_classes, 1),
        )  # fmt: skip


class _SimpleSegmentationModel(nn.Module):
    """torchvision FCN / DeepLabV3: `backbone`, `classifier`, `aux_classifier`."""

    def __init__(self, classifier, num_classes):
        super().__init__()
        self.backbone = IntermediateLayerGetter()
        self.classifier = classifier
        self.aux_classifier = FCNHead(6, num_classes)

    def forward(self, x):
        features = self.backbone(x)
        out = F.interpolate(self.classifier(features["out"]), size=x.shape[-2:], mode="bilinear")
        aux = F.interpolate(self.aux_classifier(features["aux"]), size=x.shape[-2:], mode="bilinear")  # fmt: skip
        return {"out": out, "aux": aux}


def fcn(num_classes=4):
    return _SimpleSegmentationModel(FCNHead(8, num_classes), num_classes)


def deeplabv3(num_classes=4):
    return _SimpleSegmentationModel(DeepLabHead(8, num_classes), num_classes)


# --- timm -------------------------------------------------------------------------------------


class NormMlpClassifierHead(nn.Module):
    def __init__(self, in_features, num_classes):
        super().__init__()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(in_features)
        self.flatten = nn.Flatten(1)
        self.pre_logits = nn.Identity()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(in_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x):
        x = self.pre_logits(self.flatten(self.norm(self.global_pool(x).permute(0, 2, 3, 1))))
        return self.fc(self.drop(x))


class ConvNeXt(nn.Module):
    def __init__(self, num_classes=6):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.head = NormMlpClassifierHead(8, num_classes)

    def get_classifier(self):
        return self.head.fc

    def forward(self, x):
        return self.head(self.stem(x))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes=6, embed_dim=8):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, embed_dim, 4, stride=4)
        self.norm = nn.LayerNorm(embed_dim)
        self.fc_norm = nn.Identity()
        self.head_drop = nn.Dropout(0.3)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()

    def get_classifier(self):
        return self.head

    def forward_features(self, x):
        return self.norm(self.patch_embed(x).flatten(2).transpose(1, 2))  # (B, N, D)

    def forward_head(self, x):
        return self.head(self.head_drop(self.fc_norm(x[:, 0])))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


# --- segmentation_models_pytorch and mmseg ----------------------------------------------------


class SMPUnet(nn.Module):
    """SMP's SegmentationModel: encoder, decoder, segmentation_head, classification_head."""

    def __init__(self, classes=3, aux_classes=2):
        super().__init__()
        self.encoder = nn.Conv2d(3, 8, 3, padding=1)
        self.decoder = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.segmentation_head = nn.Sequential(nn.Conv2d(8, classes, 3, padding=1), nn.Identity(), nn.Identity())  # fmt: skip
        self.classification_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, aux_classes)
        )

    def forward(self, x):
        features = [F.relu(self.encoder(x))]
        masks = self.segmentation_head(self.decoder(features[-1]))
        return masks, self.classification_head(features[-1])


class MMSegFCNHead(nn.Module):
    """mmseg BaseDecodeHead: `cls_seg` applies `dropout` then `conv_seg`."""

    def __init__(self, in_channels=8, channels=8, num_classes=4):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU())
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def cls_seg(self, feat):
        return self.conv_seg(self.dropout(feat))

    def forward(self, x):
        return self.cls_seg(self.convs(x))


class EncoderDecoder(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.decode_head = MMSegFCNHead(num_classes=num_classes)
        self.auxiliary_head = MMSegFCNHead(channels=6, num_classes=num_classes)

    def forward(self, inputs):
        x = F.relu(self.backbone(inputs))
        out = self.decode_head(x)
        return (out, self.auxiliary_head(x)) if self.training else out


class CascadeEncoderDecoder(nn.Module):
    """mmseg OCRNet style: `decode_head` is a ModuleList whose last head is the main one."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.decode_head = nn.ModuleList(
            [MMSegFCNHead(num_classes=num_classes), MMSegFCNHead(num_classes=num_classes)]
        )

    def forward(self, inputs):
        x = F.relu(self.backbone(inputs))
        return self.decode_head[1](x + 0 * self.decode_head[0](x).mean())


LAYOUTS = {
    # name: (builder, classifier path, path of the module whose input is captured)
    "transformers-segformer": (
        SegformerForSemanticSegmentation,
        "decode_head.classifier",
        "decode_head.dropout",
    ),  # fmt: skip
    "transformers-upernet": (
        UperNetForSemanticSegmentation,
        "decode_head.classifier",
        "decode_head.classifier",
    ),  # fmt: skip
    "transformers-vit": (ViTForImageClassification, "classifier", "classifier"),
    "torchvision-resnet": (ResNet, "fc", "fc"),
    "torchvision-vgg": (VGG, "classifier.6", "classifier.5"),
    "torchvision-mobilenet": (MobileNetV2, "classifier.1", "classifier.0"),
    "torchvision-fcn": (fcn, "classifier.4", "classifier.3"),
    "torchvision-deeplabv3": (deeplabv3, "classifier.4", "classifier.4"),
    "timm-convnext": (ConvNeXt, "head.fc", "head.drop"),
    "timm-vit": (VisionTransformer, "head", "head_drop"),
    "smp-unet": (SMPUnet, "segmentation_head.0", "segmentation_head.0"),
    "mmseg-encoder-decoder": (EncoderDecoder, "decode_head.conv_seg", "decode_head.dropout"),
    "mmseg-cascade": (CascadeEncoderDecoder, "decode_head.1.conv_seg", "decode_head.1.dropout"),
}
