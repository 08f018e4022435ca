"""SAR on the queries of a query-based model: the matched queries' class embeddings and labels.

A query-based segmentor (Mask2Former) classifies each decoder query with one class head
(``class_predictor``, ``C + 1`` outputs, the last for "no object"), once per decoder layer, and
its loss matches queries to ground-truth segments with a Hungarian matcher, once per layer it
supervises. :class:`QueryCapture` records both during the model's own forward pass:

* every call of the class head: its input, the ``(B, Q, D)`` query embeddings (the features SAR
  pulls), and its output, the ``(B, Q, C + 1)`` logits;
* every call of the matcher: the pairs ``(query, target)`` it chose and the targets' classes.

A matcher call is paired with the class head call whose logits it matched (the same tensor), so
each supervised layer gives its queries and their labels: a matched query takes its target's
class, an unmatched one ``ignore_index`` (no pull). The matching is the loss's own (nothing is
re-run: the matcher samples random points, so running it again would draw other points and
move the generator). A layer the loss does not match gives nothing, so SAR supervises exactly
the layers the model's own loss does: for ``transformers``' Mask2Former that is every decoder
layer (its loss matches the intermediate layers too, whatever ``use_auxiliary_loss`` says).

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Matcher(nn.Module):  # query 2 -> target 0, query 0 -> target 1
    ...     def forward(self, masks, logits, mask_labels, class_labels):
    ...         return [(torch.tensor([2, 0]), torch.tensor([0, 1]))]
    >>> class Toy(nn.Module):  # 3 queries, a class head with C = 2 classes + no object
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.class_predictor = nn.Linear(4, 3)
    ...         self.criterion = nn.Module()
    ...         self.criterion.matcher = Matcher()
    ...     def forward(self, queries, class_labels):
    ...         logits = self.class_predictor(queries)
    ...         return self.criterion.matcher(None, logits, None, class_labels)
    >>> toy = Toy()
    >>> with QueryCapture(toy) as queries:
    ...     _ = toy(torch.randn(1, 3, 4), [torch.tensor([1, 0])])
    >>> features, labels = queries.matched()
    >>> tuple(features.shape), labels.tolist()
    ((3, 4), [0, 255, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["QueryCapture", "matched_query_labels"]


def matched_query_labels(
    indices: Sequence[tuple[Tensor, Tensor]],
    class_labels: Sequence[Tensor],
    num_queries: int,
    *,
    ignore_index: int = 255,
) -> Tensor:
    """The class of each query under a matching: its target's class, else ``ignore_index``.

    Args:
        indices: per image, ``(query_indices, target_indices)`` as a Hungarian matcher returns
            them (``query_indices[k]`` is matched to target ``target_indices[k]``).
        class_labels: per image, the ``(N_i,)`` classes of its targets.
        num_queries: ``Q``, the queries per image.
        ignore_index: the label of an unmatched query.

    Returns:
        ``(B, Q)`` long labels.

    Raises:
        ValueError: the lists differ in length, a query or target index is out of range, or a
            query is matched twice.
    """
    if len(indices) != len(class_labels):
        raise ValueError(
            f"matched_query_labels: {len(indices)} matchings for {len(class_labels)} images"
        )
    device = class_labels[0].device if len(class_labels) else torch.device("cpu")
    labels = torch.full((len(indices), num_queries), ignore_index, dtype=torch.long, device=device)
    for b, ((queries, targets), classes) in enumerate(zip(indices, class_labels, strict=True)):
        queries = torch.as_tensor(queries, dtype=torch.long, device=device)
        targets = torch.as_tensor(targets, dtype=torch.long, device=device)
        if queries.shape != targets.shape or queries.dim() != 1:
            raise ValueError(
                f"matched_query_labels: image {b} pairs {tuple(queries.shape)} queries with "
                f"{tuple(targets.shape)} targets"
            )
        if queries.numel() == 0:
            continue
        if int(queries.min()) < 0 or int(queries.max()) >= num_queries:
            raise ValueError(
                f"matched_query_labels: image {b} matches query {int(queries.max())}, outside "
                f"[0, {num_queries})"
            )
        if int(targets.min()) < 0 or int(targets.max()) >= classes.numel():
            raise ValueError(
                f"matched_query_labels: image {b} matches target {int(targets.max())} of "
                f"{classes.numel()}"
            )
        if queries.unique().numel() != queries.numel():
            raise ValueError(f"matched_query_labels: image {b} matches a query twice")
        labels[b, queries] = classes.to(device=device, dtype=torch.long)[targets]
    return labels


@dataclass
class _HeadCall:
    """One class head call: its input queries and output logits."""

    queries: Tensor  # (B, Q, D)
    logits: Tensor  # (B, Q, C + 1)


def _mask2former_matcher_args(args: tuple, kwargs: dict) -> tuple[Tensor, list[Tensor]]:
    """The class logits and target classes a Mask2Former matcher was called with."""
    names = ("masks_queries_logits", "class_queries_logits", "mask_labels", "class_labels")
    given = dict(zip(names, args, strict=False)) | kwargs
    return given["class_queries_logits"], list(given["class_labels"])


def _get(model: nn.Module, path: str) -> Any:
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    current: Any = model
    for part in path.split("."):
        current = getattr(current, part, None)
        if current is None:
            return None
    return current


class QueryCapture:
    """Records a query-based model's query embeddings and its loss's matchings, for SAR.

    Use it as a context manager around the forward pass that computes the model's loss (with
    the labels), then call :meth:`matched` for the features and labels of SAR::

        sar = SemanticAnchorRegularizer(C, config.hidden_dim, dense=False, no_object=True)
        with QueryCapture(model) as queries:
            out = model(pixel_values, mask_labels=masks, class_labels=classes)
        loss = out.loss + sar(*queries.matched(), model.class_predictor)

    Args:
        model: a ``transformers`` ``Mask2FormerForUniversalSegmentation`` or any model with a
            class head at ``classifier`` and a matcher module at ``matcher``.
        classifier: attribute path of the class head (``C + 1`` outputs).
        matcher: attribute path of the loss's matcher module.
        matcher_args: reads ``(class logits, per-image target classes)`` from a matcher call's
            ``(args, kwargs)`` (default: Mask2Former's matcher signature).
        layers: ``"all"`` (every layer the loss matched) or ``"last"`` (the final layer only).
        ignore_index: the label of an unmatched query.

    Raises:
        TypeError: no ``nn.Module`` at ``classifier`` or ``matcher``.
        ValueError: an unknown ``layers``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        classifier: str = "class_predictor",
        matcher: str = "criterion.matcher",
        matcher_args: Callable[[tuple, dict], tuple[Tensor, list[Tensor]]] | None = None,
        layers: str = "all",
        ignore_index: int = 255,
    ) -> None:
        head, match = _get(model, classifier), _get(model, matcher)
        if not isinstance(head, nn.Module):
            raise TypeError(
                f"QueryCapture needs an nn.Module class head at {classifier!r} (or pass classifier=)"
            )
        if not isinstance(match, nn.Module):
            raise TypeError(
                f"QueryCapture needs an nn.Module matcher at {matcher!r} (or pass matcher=)"
            )
        if layers not in ("all", "last"):
            raise ValueError(f"QueryCapture: layers must be 'all' or 'last', got {layers!r}")
        self.classifier, self.matcher = head, match
        self.layers, self.ignore_index = layers, ignore_index
        self._matcher_args = matcher_args or _mask2former_matcher_args
        self._calls: list[_HeadCall] = []
        self._matched: list[tuple[int, Tensor]] = []  # (class head call, (B, Q) labels)
        self._handles: list[Any] = []

    # ------------------------------------------------------------------ hooks
    def _on_head(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self._calls.append(_HeadCall(args[0], output))

    def _on_match(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        logits, classes = self._matcher_args(args, kwargs)
        call = next((k for k, c in enumerate(self._calls) if c.logits is logits), None)
        if call is None:
            raise RuntimeError(
                "QueryCapture: the matcher was called with class logits that no recorded call "
                "of the class head returned (is `classifier` the head the loss reads?)"
            )
        num_queries = self._calls[call].logits.shape[1]
        labels = matched_query_labels(output, classes, num_queries, ignore_index=self.ignore_index)
        self._matched.append((call, labels))

    def attach(self) -> QueryCapture:
        """Start recording (what ``with`` does); earlier records are dropped."""
        self.detach()
        self.reset()
        self._handles = [
            self.classifier.register_forward_hook(self._on_head),
            self.matcher.register_forward_hook(self._on_match, with_kwargs=True),
        ]
        return self

    def detach(self) -> None:
        """Stop recording; what was recorded stays readable."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reset(self) -> None:
        """Forget what was recorded (a new step)."""
        self._calls, self._matched = [], []

    def __enter__(self) -> QueryCapture:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # ----------------------------------------------------------------- results
    @property
    def num_layers(self) -> int:
        """How many class head calls the loss matched (decoder layers it supervises)."""
        return len(self._matched)

    def matched(self) -> tuple[Tensor, Tensor]:
        """The query embeddings and labels of the supervised layers, for a vector regularizer.

        Returns:
            ``features`` ``(L * B * Q, D)`` and ``labels`` ``(L * B * Q,)``: every query of
            every matched layer (``L`` of them; ``"last"``: the final layer's only), unmatched
            ones labelled ``ignore_index``, layer by layer in the decoder's order.

        Raises:
            RuntimeError: nothing was matched (the forward pass had no labels, or ran outside
                the capture).
        """
        if not self._matched:
            raise RuntimeError(
                "QueryCapture recorded no matching: run the model's forward pass with its labels "
                "(mask_labels / class_labels) inside `with QueryCapture(model)`"
            )
        chosen = sorted(self._matched, key=lambda item: item[0])  # decoder order
        if self.layers == "last":
            chosen = chosen[-1:]
        features = torch.cat([self._calls[k].queries.flatten(0, 1) for k, _ in chosen])  # (N, D)
        labels = torch.cat([labels.flatten() for _, labels in chosen])  # (N,)
        return features, labels
