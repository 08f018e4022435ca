"""Matched queries of a query-based model: label assignment, the capture, SAR on queries."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from semantic_anchors.queries import QueryCapture, matched_query_labels
from semantic_anchors.regularizers import SemanticAnchorRegularizer
from tests._helpers.query_models import (
    HIDDEN,
    NUM_LABELS,
    NUM_QUERIES,
    stripe_targets,
    tiny_mask2former,
)

pytest.importorskip("transformers")


# ----------------------------------------------------------------- label assignment
def _slow_labels(costs, classes, ignore):
    """Per image: solve the assignment on the cost, then label query by query in a loop."""
    out = []
    for cost, cls in zip(costs, classes, strict=True):
        rows, cols = linear_sum_assignment(cost)
        pairs = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
        out.append([int(cls[pairs[q]]) if q in pairs else ignore for q in range(cost.shape[0])])
    return torch.tensor(out)


@pytest.mark.parametrize("targets", [[0, 3, 5], [7, 7, 2], [8, 0, 1]])
def test_labels_follow_the_hungarian_matching(targets):
    rng = np.random.default_rng(sum(targets))
    queries = 8
    costs = [rng.normal(size=(queries, n)) for n in targets]
    classes = [torch.as_tensor(rng.integers(0, 5, size=n)) for n in targets]
    indices = [tuple(torch.as_tensor(a) for a in linear_sum_assignment(c)) for c in costs]
    got = matched_query_labels(indices, classes, queries, ignore_index=255)
    assert torch.equal(got, _slow_labels(costs, classes, 255))
    assert ((got != 255).sum(dim=1) == torch.tensor(targets)).all()


def test_bad_matchings_are_named():
    cls = [torch.tensor([1, 2])]
    with pytest.raises(ValueError, match="2 matchings for 1 images"):
        matched_query_labels([(torch.tensor([0]), torch.tensor([0]))] * 2, cls, 4)
    with pytest.raises(ValueError, match="matches query 4, outside"):
        matched_query_labels([(torch.tensor([4]), torch.tensor([0]))], cls, 4)
    with pytest.raises(ValueError, match="matches target 2 of 2"):
        matched_query_labels([(torch.tensor([0]), torch.tensor([2]))], cls, 4)
    with pytest.raises(ValueError, match="matches a query twice"):
        matched_query_labels([(torch.tensor([1, 1]), torch.tensor([0, 1]))], cls, 4)


# ----------------------------------------------------------------- the capture
@pytest.fixture(scope="module")
def batch():
    return stripe_targets()


def _loss_and_grads(model, batch, capture: bool):
    images, masks, classes = batch
    model.zero_grad()
    torch.manual_seed(123)  # the matcher's random points
    if capture:
        with QueryCapture(model):
            out = model(images, mask_labels=masks, class_labels=classes)
    else:
        out = model(images, mask_labels=masks, class_labels=classes)
    out.loss.backward()
    return out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_the_capture_leaves_the_model_s_training_bitwise_unchanged(batch):
    model = tiny_mask2former()
    loss, grads = _loss_and_grads(model, batch, capture=False)
    loss_c, grads_c = _loss_and_grads(model, batch, capture=True)
    assert torch.equal(loss, loss_c)
    assert len(grads) == len(grads_c) and all(map(torch.equal, grads, grads_c))


def test_the_labels_are_the_loss_s_own_matching(batch, monkeypatch):
    """Each supervised layer's labels equal what the loss's matcher returned for that layer's
    logits (recorded independently by wrapping the matcher), and the features are the class
    head's inputs."""
    model = tiny_mask2former()
    images, masks, classes = batch
    matcher, head, seen = model.criterion.matcher, model.class_predictor, []
    plain = type(matcher).forward

    def recording(self, masks_q, logits_q, mask_labels, class_labels):
        indices = plain(self, masks_q, logits_q, mask_labels, class_labels)
        seen.append((logits_q, indices))
        return indices

    monkeypatch.setattr(type(matcher), "forward", recording)
    inputs = []
    hook = head.register_forward_hook(lambda m, a, o: inputs.append((a[0].detach(), o)))
    with QueryCapture(model) as queries:
        model(images, mask_labels=masks, class_labels=classes)
    hook.remove()
    layers = len(inputs)
    assert queries.num_layers == layers == len(seen) == 3  # the loss matches every layer
    features, labels = queries.matched()
    batch_q = len(classes) * NUM_QUERIES
    assert features.shape == (layers * batch_q, HIDDEN) and labels.shape == (layers * batch_q,)
    for k, (x, logits) in enumerate(inputs):  # decoder order
        indices = next(ind for lg, ind in seen if lg is logits)
        expected = torch.full((len(classes), NUM_QUERIES), 255)
        for b, (q, t) in enumerate(indices):
            for qi, ti in zip(q.tolist(), t.tolist(), strict=True):
                expected[b, qi] = int(classes[b][ti])
        assert torch.equal(labels[k * batch_q : (k + 1) * batch_q], expected.flatten())
        assert torch.equal(features[k * batch_q : (k + 1) * batch_q].detach(), x.flatten(0, 1))
    # the image without instances has no matched query in any layer
    assert (labels.view(layers, len(classes), NUM_QUERIES)[:, -1] == 255).all()


def test_last_layer_only(batch):
    images, masks, classes = batch
    model = tiny_mask2former()
    torch.manual_seed(0)
    with QueryCapture(model, layers="last") as last:
        model(images, mask_labels=masks, class_labels=classes)
    torch.manual_seed(0)
    with QueryCapture(model) as every:
        model(images, mask_labels=masks, class_labels=classes)
    features, labels = last.matched()
    rows = len(classes) * NUM_QUERIES
    assert features.shape == (rows, HIDDEN)
    assert torch.equal(features, every.matched()[0][-rows:])  # the final layer's queries
    assert last.classifier is model.class_predictor
    assert model.class_predictor.out_features == NUM_LABELS + 1


def test_the_capture_explains_what_is_missing(batch):
    model = tiny_mask2former()
    with QueryCapture(model) as queries:
        model(batch[0])  # no labels: no loss, no matching
    with pytest.raises(RuntimeError, match="recorded no matching"):
        queries.matched()
    with pytest.raises(TypeError, match="class head at 'head'"):
        QueryCapture(model, classifier="head")
    with pytest.raises(ValueError, match="layers must be"):
        QueryCapture(model, layers="first")


# ----------------------------------------------------------------- SAR on queries
def test_sar_on_matched_queries_trains_the_decoder_and_ignores_unmatched_queries(batch):
    images, masks, classes = batch
    model = tiny_mask2former()
    sar = SemanticAnchorRegularizer(NUM_LABELS, HIDDEN, dense=False, no_object=True)
    with QueryCapture(model) as queries:
        out = model(images, mask_labels=masks, class_labels=classes)
    features, labels = queries.matched()
    # The model's own head, made confident on the anchors so that the gate opens at once (a
    # callable classifier of C + 1 outputs is part of the contract).
    confident = 50.0 * torch.eye(NUM_LABELS, NUM_LABELS + 1)

    def head(anchors):
        return model.class_predictor(anchors) + confident

    reg = sar(features, labels, head)
    assert torch.isfinite(reg) and reg > 0 and bool(sar.last_stats["gate_open"])
    (grad,) = torch.autograd.grad(reg, features, retain_graph=True)
    unmatched = labels == 255
    assert unmatched.any() and (~unmatched).any()
    assert torch.equal(grad[unmatched], torch.zeros_like(grad[unmatched]))  # no pull at all
    assert (grad[~unmatched].abs().sum(dim=1) > 0).all()
    (out.loss + reg).backward()
    decoder = [p.grad for n, p in model.named_parameters() if "transformer_module.decoder" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in decoder)


def test_a_batch_without_any_instance_gives_zero_pull_not_nan():
    images, masks, classes = stripe_targets(batch=1, empty_last=True)
    model = tiny_mask2former()
    sar = SemanticAnchorRegularizer(NUM_LABELS, HIDDEN, dense=False, no_object=True)
    sar.semantic_anchors.normal_()
    sar.initialized.fill_(True)
    with QueryCapture(model) as queries:
        out = model(images, mask_labels=masks, class_labels=classes)
    features, labels = queries.matched()
    assert (labels == 255).all()
    reg = sar(features, labels, model.class_predictor)
    assert torch.isfinite(out.loss) and torch.isfinite(reg)
    assert sar.last_stats["loss_p2a"] == 0


def test_the_module_example_runs():
    import doctest

    import semantic_anchors.queries as module

    result = doctest.testmod(module)
    assert result.attempted > 5 and result.failed == 0
