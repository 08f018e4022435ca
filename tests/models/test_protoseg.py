"""ProtoSeg: Sinkhorn, PPC / PPD, the prototype update and the classifier against slow loops;
the wrapper on zoo segmentors (the model contract); bad input; one training step."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from semantic_anchors.models import create_model
from semantic_anchors.models.segmentors.hrnet import build_hrnet_segmentor
from semantic_anchors.models.segmentors.protoseg import ProtoSegSegmentor, PrototypeClassifier
from semantic_anchors.regularizers.protoseg import ProtoSegLoss, sinkhorn_knopp
from semantic_anchors.regularizers.registry import build_regularizer
from tests._helpers.contract import ModelContractTests
from tests._helpers.syncs import count_syncs

# --- slow references -----------------------------------------------------------------------


def slow_sinkhorn(scores: list[list[float]], iterations: int = 3, epsilon: float = 0.05):
    """The authors' algorithm element by element: Q = exp(S / eps)^T (M x n), total 1, then
    prototypes to 1/M and pixels to 1/n, ``iterations`` times, finally times n."""
    n, m = len(scores), len(scores[0])
    q = [[math.exp(scores[i][j] / epsilon) for i in range(n)] for j in range(m)]
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for j in range(m):
            s = sum(q[j])
            q[j] = [v / s / m for v in q[j]]
        for i in range(n):
            s = sum(q[j][i] for j in range(m))
            for j in range(m):
                q[j][i] = q[j][i] / s / n
    return [[q[j][i] * n for j in range(m)] for i in range(n)]


def slow_protoseg(features, labels, protos, ignore=255, temperature=1.0):
    """PPC and PPD pixel by pixel; pixels in (b, y, x) order, per-class Sinkhorn by the loop."""
    c, m, _ = protos.shape
    emb = F.normalize(features.double().permute(0, 2, 3, 1).reshape(-1, features.shape[1]), dim=1)
    protos = F.normalize(protos.double(), dim=-1)
    flat = labels.reshape(-1).tolist()
    assigned = {}
    for k in range(c):
        pixels = [i for i, y in enumerate(flat) if y == k]
        if not pixels:
            continue
        scores = [[float(emb[i] @ protos[k, j]) for j in range(m)] for i in pixels]
        for i, row in zip(pixels, slow_sinkhorn(scores), strict=True):
            assigned[i] = max(range(m), key=row.__getitem__)
    ppc = ppd = 0.0
    for i, y in enumerate(flat):
        if y == ignore:
            continue
        sims = [float(emb[i] @ protos[k, j]) for k in range(c) for j in range(m)]
        pos = sims[y * m + assigned[i]]
        ppc += math.log(sum(math.exp(s / temperature) for s in sims)) - pos / temperature
        ppd += (1 - pos) ** 2
    n = max(1, sum(y != ignore for y in flat))
    return ppc / n, ppd / n


def slow_logits(head: PrototypeClassifier, emb: torch.Tensor) -> torch.Tensor:
    """Max cosine per class, then the LayerNorm over classes, pixel by pixel."""
    b, _, h, w = emb.shape
    out = torch.empty(b, head.num_classes, h, w)
    protos = F.normalize(head.prototypes, dim=-1)
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                f = F.normalize(emb[bi, :, y, x], dim=0)
                best = torch.stack([max(f @ p for p in protos[k]) for k in range(head.num_classes)])
                norm = head.mask_norm
                best = (best - best.mean()) / torch.sqrt(best.var(unbiased=False) + norm.eps)
                out[bi, :, y, x] = best * norm.weight + norm.bias
    return out


def setup(c=3, m=4, e=8, seed=0, **loss_options):
    torch.manual_seed(seed)
    head = PrototypeClassifier(e, c, num_prototypes=m)
    loss = ProtoSegLoss(c, e, **loss_options)
    features = torch.randn(2, e, 4, 5, requires_grad=True)
    labels = torch.randint(0, c, (2, 4, 5))
    labels[0, 0, :3] = 255
    return head, loss, features, labels


# --- Sinkhorn -------------------------------------------------------------------------------


def test_sinkhorn_equals_the_slow_loop_per_group():
    torch.manual_seed(0)
    scores = torch.rand(30, 5) * 2 - 1
    groups = torch.randint(0, 3, (30,))
    plan = sinkhorn_knopp(scores, groups, 3)
    for g in range(3):
        rows = groups == g
        expected = torch.tensor(slow_sinkhorn(scores[rows].double().tolist()), dtype=torch.float64)
        torch.testing.assert_close(plan[rows].double(), expected, rtol=1e-5, atol=1e-7)
    one_group = torch.tensor(slow_sinkhorn(scores[:7].double().tolist()), dtype=torch.float64)
    torch.testing.assert_close(sinkhorn_knopp(scores[:7]).double(), one_group, rtol=1e-5, atol=1e-7)


def test_sinkhorn_marginals_rows_one_and_equal_partition():
    torch.manual_seed(1)
    scores, groups = torch.rand(40, 4).double(), torch.randint(0, 2, (40,))
    plan = sinkhorn_knopp(scores, groups, 2, iterations=200, epsilon=0.5)
    torch.testing.assert_close(plan.sum(1), torch.ones(40, dtype=plan.dtype))
    for g in range(2):
        n = int((groups == g).sum())
        torch.testing.assert_close(plan[groups == g].sum(0), torch.full((4,), n / 4).double())
    # A tiny epsilon stays finite (log domain) where exp(s / eps) would overflow.
    assert torch.isfinite(sinkhorn_knopp(scores, epsilon=1e-4)).all()


# --- the classifier -------------------------------------------------------------------------


def test_logits_equal_the_slow_max_over_prototypes_loop():
    torch.manual_seed(2)
    head = PrototypeClassifier(6, 3, num_prototypes=4, embed_dim=5)
    with torch.no_grad():
        head.mask_norm.weight.uniform_(0.5, 2)
        head.mask_norm.bias.normal_()
        emb = head.embed(torch.randn(2, 6, 3, 4))
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(2, 3, 4))
        logits = head(emb)
        torch.testing.assert_close(logits, slow_logits(head, emb), rtol=1e-5, atol=1e-5)
        vectors = torch.randn(3, 5)  # (C, E) anchors, plain and shaped for a conv classifier
        torch.testing.assert_close(head(vectors[:, :, None, None])[:, :, 0, 0], head(vectors))
        raw = PrototypeClassifier(6, 3, num_prototypes=4, embed_dim=5, logit_norm=False)
        raw.prototypes.copy_(head.prototypes)
        cos = F.normalize(vectors, dim=1) @ F.normalize(head.prototypes, dim=-1).flatten(0, 1).T
        torch.testing.assert_close(raw(vectors), cos.view(3, 3, 4).amax(-1))
    assert not head.prototypes.requires_grad
    assert "prototypes" in dict(head.named_buffers())


def test_classifier_rejects_bad_inputs():
    head = PrototypeClassifier(6, 3, num_prototypes=2, embed_dim=4)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 4\) or \(B, 4, h, w\)"):
        head(torch.randn(2, 6, 3, 3))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 6, h, w\)"):
        head.embed(torch.randn(2, 4, 3, 3))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        head([1.0])
    with pytest.raises(ValueError, match="num_prototypes: expected an int >= 1, got 0"):
        PrototypeClassifier(6, 3, num_prototypes=0)


# --- PPC, PPD and the update ----------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_ppc_and_ppd_equal_the_slow_loop(temperature):
    head, _, features, labels = setup()
    loss = ProtoSegLoss(3, 8, ppc_weight=1.0, ppd_weight=1.0, temperature=temperature)
    total = loss.eval()(features, labels, head)
    ppc, ppd = slow_protoseg(features.detach(), labels, head.prototypes, temperature=temperature)
    assert loss.last_stats["loss_ppc"] == pytest.approx(ppc, rel=1e-5)
    assert loss.last_stats["loss_ppd"] == pytest.approx(ppd, rel=1e-5)
    assert total.item() == pytest.approx(ppc + ppd, rel=1e-5)


def test_default_weights_are_the_authors_and_gradient_reaches_features_only():
    head, loss, features, labels = setup()
    assert (loss.ppc_weight, loss.ppd_weight, loss.momentum) == (0.01, 0.001, 0.999)
    assert (loss.sinkhorn_iterations, loss.sinkhorn_epsilon, loss.temperature) == (3, 0.05, 1.0)
    value = loss.eval()(features, labels, head)
    ppc, ppd = slow_protoseg(features.detach(), labels, head.prototypes)
    assert value.item() == pytest.approx(0.01 * ppc + 0.001 * ppd, rel=1e-5)
    value.backward()
    assert features.grad.abs().sum() > 0
    assert all(p.grad is None for p in head.parameters())


def test_float64_gradcheck():
    head, loss, features, labels = setup(c=2, m=2, e=3)
    feats = features.detach()[:1, :, :2, :2].double().requires_grad_()
    loss = ProtoSegLoss(2, 3, ppc_weight=1.0, ppd_weight=1.0, validate=False).eval()
    assert torch.autograd.gradcheck(lambda f: loss(f, labels[1:, :2, :2], head), (feats,))


def _hand_case():
    """Four pixels on E = 4 with prototypes e1, e2 (class 0) and e3, e4 (class 1): a -> p00,
    b -> p01, c -> p10 are classified correctly; d (class 1) lies nearest class 0, so it takes
    p11 in the class-1 Sinkhorn but moves nothing. Returns the head, pixels, labels and the
    prototypes expected after one update with momentum gamma = 0.5."""
    e1, e2, e3, e4 = torch.eye(4)
    head = PrototypeClassifier(4, 2, num_prototypes=2)
    head.prototypes.copy_(torch.stack([torch.stack([e1, e2]), torch.stack([e3, e4])]))
    pixels = F.normalize(torch.stack([e1 + 0.1 * e3, e2 + 0.2 * e1, e3 + 0.1 * e4, e1 + 0.3 * e4]))
    labels = torch.tensor([0, 0, 1, 1])
    a, b, c, _ = pixels
    expected = torch.stack([
        torch.stack([F.normalize(0.5 * e1 + 0.5 * a, dim=0), F.normalize(0.5 * e2 + 0.5 * b, dim=0)]),
        torch.stack([F.normalize(0.5 * e3 + 0.5 * c, dim=0), e4]),
    ])  # fmt: skip
    return head, pixels, labels, expected


def test_momentum_update_equals_the_hand_computation():
    head, pixels, labels, expected = _hand_case()
    features = pixels.T.reshape(1, 4, 1, 4)  # (B, E, h, w)
    loss = ProtoSegLoss(2, 4, momentum=0.5, update_assignment="argmax").train()
    loss(features, labels.view(1, 1, 4), head)
    torch.testing.assert_close(head.prototypes, expected)
    assert loss.last_stats["num_updated"] == 3
    assert loss.last_stats["pixel_acc"] == pytest.approx(0.75)
    before = head.prototypes.clone()
    loss.eval()(features, labels.view(1, 1, 4), head)  # evaluation never moves the prototypes
    assert torch.equal(head.prototypes, before)


def _ddp_worker(rank, init_file, out_dir):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo" if sys.platform.startswith("linux") else "lo0")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        head, pixels, labels, _ = _hand_case()
        mine = slice(0, 2) if rank == 0 else slice(2, 4)  # rank 0: class 0, rank 1: class 1
        loss = ProtoSegLoss(2, 4, dense=False, momentum=0.5, update_assignment="argmax")
        loss(pixels[mine], labels[mine], head)
        torch.save(head.prototypes, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_apply_the_update_of_all_ranks(tmp_path):
    """Each rank sees one class; after the all-reduce both hold the update of the whole batch."""
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected = _hand_case()[3]
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"rank{rank}.pt"), expected)


def test_prototypes_stay_unit_norm_and_gumbel_keeps_the_loss():
    head, gumbel, features, labels = setup(momentum=0.5)
    argmax = ProtoSegLoss(3, 8, momentum=0.5, update_assignment="argmax")
    copy = PrototypeClassifier(8, 3, num_prototypes=4).requires_grad_(False)
    copy.load_state_dict(head.state_dict())
    before = head.prototypes.clone()
    for _ in range(3):  # the targets are the plan's argmax either way: same loss
        assert gumbel(features, labels, head).item() == pytest.approx(
            argmax(features, labels, copy).item(), rel=1e-6
        )
        head.prototypes.copy_(copy.prototypes)
    torch.testing.assert_close(head.prototypes.norm(dim=-1), torch.ones(3, 4))
    assert not torch.equal(head.prototypes, before)
    assert not head.prototypes.requires_grad


def test_a_plain_classifier_gives_one_prototype_per_class():
    torch.manual_seed(3)
    linear = torch.nn.Linear(8, 3)
    loss = ProtoSegLoss(3, 8, dense=False, ppc_weight=1.0, ppd_weight=0.0)
    feats, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 2, 255, 1])
    cos = F.normalize(feats, dim=1) @ F.normalize(linear.weight, dim=1).T
    expected = F.cross_entropy(cos, labels, ignore_index=255)
    assert loss(feats, labels, linear).item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.last_stats["num_updated"] == 0


def test_every_pixel_ignored_is_zero_and_a_step_makes_no_sync():
    head, loss, features, labels = setup(validate=False)
    assert loss(features, torch.full_like(labels, 255), head).item() == 0.0
    with count_syncs() as log:
        loss(features, labels, head).backward()
    assert log.total == 0, log.summary()


def test_loss_rejects_bad_input():
    head, loss, features, labels = setup()
    with pytest.raises(ValueError, match=r"num_classes=3 and embed_dim=8 .* got \(3, 6\)"):
        loss(features, labels, PrototypeClassifier(8, 3, embed_dim=6))
    with pytest.raises(TypeError, match="must be a PrototypeClassifier .* got function"):
        loss(features, labels, lambda x: x)
    with pytest.raises(ValueError, match=r"weight must be \(3, 8\), got \(4, 8\)"):
        loss(features, labels, torch.nn.Conv2d(8, 4, 1))
    with pytest.raises(ValueError, match="feat_dim=8 channels in dim 1, got 5"):
        loss(torch.randn(2, 5, 4, 5), labels, head)
    for option, match in [({"temperature": 0.0}, r"`temperature` must lie in \(0.0, inf\)"),
                          ({"momentum": 1.0}, r"`momentum` must lie in \[0.0, 1.0\)"),
                          ({"sinkhorn_iterations": 0}, "`sinkhorn_iterations` must be an int >= 1"),
                          ({"update_assignment": "soft"}, r"one of \['gumbel', 'argmax'\]"),
                          ({"ppc_weight": -1.0}, "`ppc_weight` must lie in")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            ProtoSegLoss(3, 8, **option)
    with pytest.raises(ValueError, match="not take option"):
        build_regularizer("protoseg", 3, 8, dense=True, num_prototypes=5)


# --- the wrapper: the model contract on zoo segmentors --------------------------------------


class ProtoSegContract(ModelContractTests):
    dense = True
    num_classes = 4
    input_shape = (2, 3, 32, 32)

    def test_contract_attributes(self, model) -> None:
        assert isinstance(model, ProtoSegSegmentor)
        assert isinstance(model.classifier, PrototypeClassifier)
        assert model.classifier.prototypes.shape == (4, model.classifier.num_prototypes, 16)
        assert (model.num_classes, model.feat_dim, model.output_stride) == (
            4,
            16,
            self.output_stride,
        )
        assert model.aux_loss_weight == (0.4 if self.has_aux else 0.0)
        assert not list(model.segmentor.classifier.parameters())  # its own classifier: removed

    def test_predictions_are_the_nearest_prototype_class(self, model, images) -> None:
        model.eval()
        with torch.no_grad():
            out = model.forward_train(images)
            protos = F.normalize(model.classifier.prototypes, dim=-1).flatten(0, 1)
            nearest = torch.einsum("behw,ke->bkhw", out.features, protos).argmax(1)
            raw = model.forward_head(out.features).argmax(1)  # LayerNorm keeps the argmax
        torch.testing.assert_close(raw, nearest // model.classifier.num_prototypes)


class TestProtoSegFCNSmall(ProtoSegContract):
    model_name = "fcn_small"
    model_kwargs = {"prototype_head": "protoseg", "prototype_options": {"embed_dim": 16}}
    feat_dim, output_stride = 16, 8


class TestProtoSegTinyOCRNet(ProtoSegContract):
    """A narrow HRNet (width 8) OCRNet: a cascade whose coarse head gives the aux logits."""

    feat_dim, output_stride, has_aux = 16, 4, True

    def build(self, seed: int = 0):
        torch.manual_seed(seed)
        base = build_hrnet_segmentor(8, "ocr", 4, ocr_head_channels=24, ocr_channels=8)
        return ProtoSegSegmentor(base, num_prototypes=3, embed_dim=16)


def test_the_segmentor_classifier_is_removed_and_hrnet_fcn_works():
    torch.manual_seed(0)
    base = build_hrnet_segmentor(8, "fcn", 3)
    old = base.classifier
    model = ProtoSegSegmentor(base, num_prototypes=2)
    assert not any(p is old.weight for p in model.parameters())
    out = model.forward_train(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, base.feat_dim, 8, 8) and out.logits.shape == (2, 3, 32, 32)
    assert out.aux_logits is None


def test_create_model_rejects_bad_prototype_heads():
    with pytest.raises(ValueError, match="'small_cnn' is a classification model"):
        create_model("small_cnn", prototype_head="protoseg")
    with pytest.raises(ValueError, match=r"prototype_head: expected one of \['protoseg'\]"):
        create_model("fcn_small", prototype_head="proto")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['prototypes'\].*num_prototypes"):
        create_model("fcn_small", prototype_head="protoseg", prototype_options={"prototypes": 3})
    with pytest.raises(ValueError, match="given without prototype_head"):
        create_model("fcn_small", prototype_options={"num_prototypes": 3})
    assert not isinstance(create_model("fcn_small", prototype_head="none"), ProtoSegSegmentor)
    assert create_model("fcn_small", prototype_head="protoseg").training
    with pytest.raises(TypeError, match="lacks"):
        ProtoSegSegmentor(torch.nn.Conv2d(3, 3, 1))


# --- training ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_training_run_with_protoseg(tmp_path):
    from semantic_anchors.train import train
    from tests._helpers.runs import TINY

    overrides = [*TINY, "model.prototype_head=protoseg", "model.prototype_options={num_prototypes: 3}",
                 "regularizer.name=protoseg", "trainer.max_steps=2", "trainer.val_every=2"]  # fmt: skip
    metrics = train("synthlt-fcn-quick", overrides, out_dir=tmp_path / "run")
    assert 0.0 <= metrics["mIoU"] <= 100.0 and 0.0 <= metrics["aAcc"] <= 100.0


def test_the_prototype_head_without_its_losses_is_refused(tmp_path):
    from semantic_anchors.train import train
    from tests._helpers.runs import TINY

    with pytest.raises(ValueError, match="needs regularizer.name=protoseg"):
        train("synthlt-fcn-quick", [*TINY, "model.prototype_head=protoseg", "regularizer.name=sar"],
              out_dir=tmp_path / "run")  # fmt: skip
    assert not (tmp_path / "run").exists()
