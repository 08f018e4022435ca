import copy
import math

import pytest
import torch
import torch.nn.functional as F

from semantic_anchors import SemanticAnchorRegularizer
from tests._helpers.references import FixedLogits, logits_from_probs, slow_p2a

CLOSED = [[0.95, 0.03, 0.02], [0.3, 0.5, 0.2], [0.5, 0.3, 0.2]]  # anchor 2 misclassified
PARTLY = [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9]]  # anchor 1 at 0.7 < delta
OPEN = [[0.9, 0.05, 0.05], [0.1, 0.85, 0.05], [0.05, 0.05, 0.9]]


def make_batch(b=2, d=6, h=4, w=4, c=3, ignore_frac=0.2):
    features = torch.randn(b, d, h, w, requires_grad=True)
    labels = torch.randint(0, c, (b, h, w))
    labels[torch.rand(b, h, w) < ignore_frac] = 255
    return features, labels


def expected_aux(probs, tau=0.9):
    p = [row[i] for i, row in enumerate(probs)]
    logs = [0.0 if pc > tau else math.log(pc) for pc in p]
    return sum(lw / (sum(logs) + 1e-9) * -math.log(pc) for lw, pc in zip(logs, p, strict=True))


@pytest.fixture
def sar():
    return SemanticAnchorRegularizer(3, 6, lambda_aux=1.0, lambda_p2a=0.1)


@pytest.mark.parametrize(("probs", "confident"), [(CLOSED, 1), (PARTLY, 2)])
def test_closed_gate_gives_aux_only_and_no_update(sar, probs, confident):
    features, labels = make_batch()
    loss = sar(features, labels, FixedLogits(logits_from_probs(probs)))
    assert math.isclose(loss.item(), expected_aux(probs), rel_tol=1e-5)
    assert torch.equal(sar.semantic_anchors, torch.zeros(3, 6))
    assert not sar.initialized.any()
    stats = sar.last_stats
    assert stats["gate_open"] is False and stats["num_confident"] == confident
    assert stats["loss_p2a"] == 0.0


def test_open_gate_copies_then_ema_then_closes(sar):
    features, labels = make_batch()
    valid = labels != 255
    emb1 = sar.embedded_anchors().detach()
    loss = sar(features, labels, FixedLogits(logits_from_probs(OPEN)))
    # First open gate: copy (Eq. 8 initialisation), then Eq. 4 against the copy.
    torch.testing.assert_close(sar.semantic_anchors, emb1)
    assert sar.initialized.all()
    p2a = slow_p2a(features.detach().double(), labels, emb1.double(), valid)
    assert math.isclose(loss.item(), expected_aux(OPEN) + 0.1 * p2a, rel_tol=1e-5)
    assert sar.last_stats["gate_open"] is True and sar.last_stats["num_confident"] == 3
    assert math.isclose(sar.last_stats["loss_p2a"], 0.1 * p2a, rel_tol=1e-5)

    # Change the embedding as an optimizer step would, then a second open step: EMA.
    with torch.no_grad():
        for p in sar.embedding.parameters():
            p.add_(0.3)
    emb2 = sar.embedded_anchors().detach()
    assert not torch.allclose(emb1, emb2)
    loss = sar(features, labels, FixedLogits(logits_from_probs(OPEN)))
    ema = 0.999 * emb1 + 0.001 * emb2
    torch.testing.assert_close(sar.semantic_anchors, ema)
    p2a = slow_p2a(features.detach().double(), labels, ema.double(), valid)
    assert math.isclose(loss.item(), expected_aux(OPEN) + 0.1 * p2a, rel_tol=1e-5)

    # A closed step afterwards neither updates nor uses the semantic anchors.
    loss = sar(features, labels, FixedLogits(logits_from_probs(PARTLY)))
    torch.testing.assert_close(sar.semantic_anchors, ema)
    assert math.isclose(loss.item(), expected_aux(PARTLY), rel_tol=1e-5)


def test_without_ema_uses_current_embedding():
    sar = SemanticAnchorRegularizer(3, 6, use_ema=False)
    features, labels = make_batch()
    sar(features, labels, FixedLogits(logits_from_probs(OPEN)))
    with torch.no_grad():
        sar.embedding.linear[0].weight.mul_(2.0)
    emb2 = sar.embedded_anchors().detach()
    sar(features, labels, FixedLogits(logits_from_probs(OPEN)))
    torch.testing.assert_close(sar.semantic_anchors, emb2)


def test_per_class_gate_updates_and_uses_passing_classes_only():
    sar = SemanticAnchorRegularizer(3, 6, gate="class", lambda_aux=0.0)
    features, labels = make_batch(ignore_frac=0.0)
    emb = sar.embedded_anchors().detach()
    loss = sar(features, labels, FixedLogits(logits_from_probs(PARTLY)))
    assert sar.initialized.tolist() == [True, False, True]
    torch.testing.assert_close(sar.semantic_anchors[[0, 2]], emb[[0, 2]])
    assert torch.equal(sar.semantic_anchors[1], torch.zeros(6))
    used = labels != 1
    p2a = slow_p2a(features.detach().double(), labels, emb.double(), used)
    assert math.isclose(loss.item(), 0.1 * p2a, rel_tol=1e-5)


def test_eval_mode_does_not_update_state(sar):
    features, labels = make_batch()
    sar.eval()
    sar(features, labels, FixedLogits(logits_from_probs(OPEN)))
    assert not sar.initialized.any()
    assert torch.equal(sar.semantic_anchors, torch.zeros(3, 6))


def test_reweight_false_uses_mean_ce():
    sar = SemanticAnchorRegularizer(3, 6, reweight=False)
    loss = sar(*make_batch(), FixedLogits(logits_from_probs(CLOSED)))
    expected = -sum(math.log(row[i]) for i, row in enumerate(CLOSED)) / 3
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def test_gradients_reach_features_embedding_and_classifier_never_buffers():
    sar = SemanticAnchorRegularizer(3, 6, tau=1.0, delta=1e-6)  # gate open from the start
    head = torch.nn.Conv2d(6, 3, 1)
    with torch.no_grad():  # make every anchor its own argmax so the gate opens
        emb = sar.embedded_anchors()
        head.weight.copy_(torch.linalg.pinv(emb).T.mul(10)[:, :, None, None][:3])
        head.bias.zero_()
    features, labels = make_batch()
    loss = sar(features, labels, head)
    assert sar.last_stats["gate_open"] is True
    loss.backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    for name, p in sar.embedding.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    for name, buf in sar.named_buffers():
        assert not buf.requires_grad, name
    assert {n for n, _ in sar.named_buffers() if not n.startswith("embedding")} == {
        "anchors", "semantic_anchors", "initialized"
    }  # fmt: skip


def test_gradcheck_float64_wrt_features():
    sar = SemanticAnchorRegularizer(3, 4, validate=False).double()
    sar.semantic_anchors.copy_(torch.randn(3, 4))
    logits = FixedLogits(logits_from_probs(OPEN).double())
    labels = torch.randint(0, 3, (2, 3, 3))
    labels[0, 0, 0] = 255
    features = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    sar.eval()  # keep the state fixed between gradcheck evaluations
    sar.initialized.fill_(True)
    assert torch.autograd.gradcheck(lambda f: sar(f, labels, logits), (features,))


def test_state_dict_round_trip_reproduces_loss_and_ema():
    torch.manual_seed(1)
    sar = SemanticAnchorRegularizer(3, 6)
    features, labels = make_batch()
    for _ in range(2):
        sar(features, labels, FixedLogits(logits_from_probs(OPEN)))
    head_logits = FixedLogits(logits_from_probs(OPEN))
    saved = copy.deepcopy(sar.state_dict())
    torch.manual_seed(99)
    other = SemanticAnchorRegularizer(3, 6)
    assert not torch.equal(other.anchors, sar.anchors)
    other.load_state_dict(saved)
    for key, value in sar.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    assert torch.equal(sar(features, labels, head_logits), other(features, labels, head_logits))
    assert torch.equal(sar.semantic_anchors, other.semantic_anchors)


def test_gate_opens_in_a_real_training_loop():
    """End to end: the aux CE trains embedding + shared classifier until every anchor passes."""
    torch.manual_seed(0)
    c, d = 4, 16
    head = torch.nn.Conv2d(d, c, 1)
    sar = SemanticAnchorRegularizer(c, d)
    opt = torch.optim.SGD([*head.parameters(), *sar.parameters()], lr=0.05, momentum=0.9)
    features = torch.randn(4, d, 8, 8)
    labels = torch.randint(0, c, (4, 32, 32))
    opened_at = None
    for step in range(300):
        opt.zero_grad()
        logits = F.interpolate(head(features), size=(32, 32), mode="bilinear")
        loss = F.cross_entropy(logits, labels) + sar(features, labels, head)
        loss.backward()
        opt.step()
        if sar.last_stats["gate_open"]:
            opened_at = step
            break
    assert opened_at is not None, sar.last_stats
    assert sar.initialized.all()
    assert sar.last_stats["loss_p2a"] > 0


def test_vector_form_with_linear_classifier():
    sar = SemanticAnchorRegularizer(5, 8, dense=False)
    assert sar.embedding.conv is None
    fc = torch.nn.Linear(8, 5)
    features = torch.randn(7, 8, requires_grad=True)
    loss = sar(features, torch.randint(0, 5, (7,)), fc)
    loss.backward()
    assert torch.isfinite(loss) and fc.weight.grad is not None


def test_edge_cases_are_finite():
    sar = SemanticAnchorRegularizer(3, 6, gate="class")
    opened = FixedLogits(logits_from_probs(OPEN))
    features = torch.randn(2, 6, 4, 4, requires_grad=True)
    for labels in (
        torch.full((2, 8, 8), 255),  # every pixel ignored
        torch.zeros(2, 8, 8, dtype=torch.long),  # one class only, others absent
        torch.randint(0, 2, (2, 8, 8)),  # class 2 missing
    ):
        loss = sar(features, labels, opened)
        (grad,) = torch.autograd.grad(loss, features)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert sar(features, torch.full((2, 8, 8), 255), opened).item() == pytest.approx(
        expected_aux(OPEN)
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_anchors_float32(dtype):
    sar = SemanticAnchorRegularizer(3, 6, tau=1.0, delta=1e-6)
    head = torch.nn.Conv2d(6, 3, 1)
    features, labels = make_batch()
    with torch.autocast("cpu", dtype=dtype):
        feats = torch.nn.functional.conv2d(features, torch.eye(6)[:, :, None, None])
        loss = sar(feats, labels, head)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    for name in ("anchors", "semantic_anchors"):
        assert getattr(sar, name).dtype == torch.float32
    assert torch.isfinite(features.grad).all()


def test_labels_resized_by_nearest():
    sar = SemanticAnchorRegularizer(3, 6, lambda_aux=0.0)
    features, _ = make_batch(h=4, w=4)
    full = torch.randint(0, 3, (2, 16, 16))
    small = F.interpolate(full[:, None].float(), size=(4, 4), mode="nearest")[:, 0].long()
    opened = FixedLogits(logits_from_probs(OPEN))
    first = sar(features, full, opened)
    sar.semantic_anchors.zero_()  # the p2a target does not depend on the call order now
    sar.initialized.zero_()
    assert torch.equal(first, sar(features, small, opened))


@pytest.mark.parametrize("gate", ["all", "class"])
def test_a_non_finite_embedded_anchor_never_enters_the_state(gate, monkeypatch):
    """The non-finite policy: a NaN row fails the gate test (``all``: nothing is updated;
    ``class``: only the finite rows are), and the semantic anchors stay finite."""
    sar = SemanticAnchorRegularizer(3, 6, gate=gate)
    features, labels = make_batch()
    logits = logits_from_probs(OPEN)  # every anchor confident, whatever its embedding

    def head(x):  # logits that stay finite, so the gate test alone would pass every anchor
        return logits + 0.0 * x.nan_to_num().sum()

    sar(features, labels, head)
    before = sar.semantic_anchors.clone()
    assert sar.initialized.all()
    real = sar.embedded_anchors

    def poisoned():
        emb = real() + 1.0  # moved, as after an optimizer step
        emb[1] = float("nan")
        return emb

    monkeypatch.setattr(sar, "embedded_anchors", poisoned)
    sar(features, labels, head)
    assert torch.isfinite(sar.semantic_anchors).all()
    assert torch.equal(sar.semantic_anchors[1], before[1])
    changed = [not torch.equal(sar.semantic_anchors[c], before[c]) for c in (0, 2)]
    assert changed == ([False, False] if gate == "all" else [True, True])
    assert sar.last_stats["num_confident"] == 2
