"""ProtoSeg's non-learnable multi-prototype classifier (Zhou et al., CVPR 2022).

The model side of ProtoSeg: :class:`~semantic_anchors.models.segmentors.protoseg.ProtoSegSegmentor` puts a
:class:`PrototypeClassifier` where a segmentor's classifier was, and
:class:`~semantic_anchors.regularizers.protoseg.ProtoSegLoss` moves its prototypes (a buffer,
never touched by SGD). It sits here, below the models, because the loss reads and updates it:
the regularizers never import the models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_anchors._model_checks import check_features, check_int

__all__ = ["PrototypeClassifier"]


def _channels_last_layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    """``norm`` over dim 1 of ``(N, K)`` or ``(B, K, h, w)``, in ``x``'s dtype (float64 too)."""
    weight = None if norm.weight is None else norm.weight.to(x.dtype)
    bias = None if norm.bias is None else norm.bias.to(x.dtype)
    moved = x.movedim(1, -1)  # (N, K) or (B, h, w, K)
    return F.layer_norm(moved, norm.normalized_shape, weight, bias, norm.eps).movedim(-1, 1)


class PrototypeClassifier(nn.Module):
    """``M`` prototypes per class on the unit sphere; logits are the best cosine per class.

    Two halves, as ProtoSeg's ``HRNet_W48_Proto``:

    * :meth:`embed` (the segmentor's feature side): ``projection`` (1x1 conv - ReLU - 1x1 conv to
      ``embed_dim``; with ``projection_bn`` a BatchNorm before the ReLU), L2 normalisation over
      the channels, ``feat_norm`` (LayerNorm over the channels), L2 normalisation again.
    * :meth:`forward` (the classifier side, what ``model.classifier(features)`` runs): cosine
      similarity of each embedding with the ``C x M`` prototypes, the max over each class's
      ``M`` prototypes, then ``mask_norm`` (LayerNorm over the ``C`` class scores).

    The prototypes are a buffer (no gradient); they start as normalised Gaussian vectors (the
    authors' ``trunc_normal_(std=0.02)`` then L2 normalisation: the same directions) and move
    only by :meth:`~semantic_anchors.regularizers.protoseg.ProtoSegLoss`'s momentum update.

    Args:
        feature_channels: channels ``D`` of the segmentor's features (input of the projection).
        num_classes: classes ``C``.
        num_prototypes: prototypes per class ``M`` (the paper: 10).
        embed_dim: embedding width ``E``; default ``feature_channels`` (the authors project 720
            channels to 720).
        projection_bn: a BatchNorm between the projection's convolutions (the BN variant of the
            authors' ``projection.py``; the module their HRNet imports has none, the default).
        feat_norm: the LayerNorm on the embedding (authors: on).
        logit_norm: ``mask_norm``, the LayerNorm on the class scores (authors: on); off, the
            logits are the raw max cosines in ``[-1, 1]``.

    Attributes:
        prototypes: buffer ``(C, M, E)`` float32, unit rows.
        in_channels: ``E``, the width :meth:`forward` takes (as ``nn.Conv2d.in_channels``).

    Shape:
        - :meth:`embed`: ``(B, D, h, w)`` -> ``(B, E, h, w)`` unit vectors along dim 1.
        - :meth:`forward`: ``(B, E, h, w)`` -> ``(B, C, h, w)``; ``(N, E)`` -> ``(N, C)``;
          ``(C, E, 1, 1)`` (anchors shaped for a conv classifier) -> ``(C, C, 1, 1)``.

    Raises:
        ValueError / TypeError: bad sizes; inputs of another rank or width (named in the message).

    Example:
        >>> head = PrototypeClassifier(16, num_classes=4, num_prototypes=3, embed_dim=8)
        >>> emb = head.embed(torch.randn(2, 16, 5, 5))
        >>> emb.shape, head(emb).shape, head(torch.randn(4, 8)).shape
        (torch.Size([2, 8, 5, 5]), torch.Size([2, 4, 5, 5]), torch.Size([4, 4]))
    """

    def __init__(
        self,
        feature_channels: int,
        num_classes: int,
        *,
        num_prototypes: int = 10,
        embed_dim: int | None = None,
        projection_bn: bool = False,
        feat_norm: bool = True,
        logit_norm: bool = True,
    ) -> None:
        super().__init__()
        self.feature_channels = check_int("feature_channels", feature_channels)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.num_prototypes = check_int("num_prototypes", num_prototypes)
        dim = self.feature_channels if embed_dim is None else check_int("embed_dim", embed_dim)
        self.embed_dim = self.in_channels = dim
        middle: list[nn.Module] = [nn.BatchNorm2d(feature_channels)] if projection_bn else []
        self.projection = nn.Sequential(
            nn.Conv2d(feature_channels, feature_channels, 1),
            *middle,
            nn.ReLU(inplace=True),
            nn.Conv2d(feature_channels, dim, 1),
        )
        self.feat_norm = nn.LayerNorm(dim) if feat_norm else None
        self.mask_norm = nn.LayerNorm(num_classes) if logit_norm else None
        prototypes = F.normalize(torch.randn(num_classes, num_prototypes, dim), dim=-1)
        self.register_buffer("prototypes", prototypes)  # (C, M, E)

    def embed(self, x: Tensor) -> Tensor:
        """The unit-norm pixel embedding of segmentor features.

        Shape:
            x: ``(B, D, h, w)`` -> ``(B, E, h, w)``.

        Raises:
            ValueError: ``x`` is not ``(B, feature_channels, h, w)``.
        """
        check_features(x, self.feature_channels, dense=True, name="x")
        z = F.normalize(self.projection(x), dim=1)  # (B, E, h, w)
        if self.feat_norm is not None:
            z = F.normalize(_channels_last_layer_norm(z, self.feat_norm), dim=1)  # (B, E, h, w)
        return z

    def unit_prototypes(self, dtype: torch.dtype | None = None) -> Tensor:
        """The prototypes re-normalised (a fresh tensor, so the in-place momentum update never
        touches a tensor an autograd graph saved). Shape ``(C, M, E)``."""
        protos = self.prototypes if dtype is None else self.prototypes.to(dtype)
        return F.normalize(protos, dim=-1)  # (C, M, E)

    def logits_from_similarity(self, similarity: Tensor) -> Tensor:
        """Max over each class's prototypes, then ``mask_norm``.

        Shape:
            similarity: ``(N, C, M)`` -> ``(N, C)``.
        """
        scores = similarity.amax(dim=-1)  # (N, C)
        return (
            scores if self.mask_norm is None else _channels_last_layer_norm(scores, self.mask_norm)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits: the best cosine with each class's prototypes, layer-normalised over classes.

        Shape:
            x: ``(B, E, h, w)`` -> ``(B, C, h, w)``, or ``(N, E)`` -> ``(N, C)``.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` is not ``(N, E)`` or ``(B, E, h, w)``.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim not in (2, 4) or x.shape[1] != self.embed_dim:
            raise ValueError(
                f"x: expected shape (N, {self.embed_dim}) or (B, {self.embed_dim}, h, w) "
                f"(embeddings), got {tuple(x.shape)}"
            )
        moved = x.movedim(1, -1)  # (N, E) or (B, h, w, E)
        flat = F.normalize(moved.reshape(-1, self.embed_dim), dim=-1)  # (P, E)
        protos = self.unit_prototypes(flat.dtype).flatten(0, 1)  # (C*M, E)
        similarity = (flat @ protos.T).view(-1, self.num_classes, self.num_prototypes)
        logits = self.logits_from_similarity(similarity)  # (P, C)
        return logits.view(*moved.shape[:-1], self.num_classes).movedim(-1, 1)

    def extra_repr(self) -> str:
        return (
            f"feature_channels={self.feature_channels}, num_classes={self.num_classes}, "
            f"num_prototypes={self.num_prototypes}, embed_dim={self.embed_dim}"
        )
