"""SAR in float64 against a slow, independent float64 reference of the authors' semantics.

The reference below re-implements paper Eq. 4-9 as the authors' training code runs them, with
explicit loops and hand-written batch norm, reading only the parameters of our modules; nothing
from ``semantic_anchors`` is called. In float64 every step must agree to ~1e-12 relative: loss,
the gradients of the features, of the embedding ``h_psi`` and of the shared classifier, and the
EMA semantic anchors.
"""

from __future__ import annotations

import math

import pytest
import torch

from semantic_anchors import SemanticAnchorRegularizer

C, D, B, H, W, h, w = 4, 8, 2, 6, 7, 3, 3  # labels (B, H, W) are nearest-resized to (h, w)
RTOL = 1e-12

# Row c: the distribution the shared classifier predicts for embedded anchor c.
CLOSED = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.5, 0.3], [0.4, 0.1, 0.2, 0.3]]
OPEN_A = [[0.95, 0.02, 0.02, 0.01], [0.05, 0.85, 0.05, 0.05], [0.06, 0.06, 0.82, 0.06],
          [0.04, 0.04, 0.04, 0.88]]  # fmt: skip
OPEN_B = [[0.83, 0.07, 0.05, 0.05], [0.02, 0.96, 0.01, 0.01], [0.04, 0.04, 0.89, 0.03],
          [0.05, 0.05, 0.05, 0.85]]  # fmt: skip
PARTLY = [[0.92, 0.04, 0.02, 0.02], [0.1, 0.7, 0.1, 0.1], [0.02, 0.02, 0.94, 0.02],
          [0.05, 0.05, 0.05, 0.85]]  # fmt: skip
SCHEDULE = [CLOSED, OPEN_A, OPEN_B, PARTLY, OPEN_A, CLOSED, OPEN_B]


# ----------------------------------------------------------------------------- the reference
def _batch_norm_train(x, bn):
    """BatchNorm over the C anchors as the batch (training mode: biased batch variance)."""
    mean = sum(x[i] for i in range(x.shape[0])) / x.shape[0]  # (D,)
    var = sum((x[i] - mean) ** 2 for i in range(x.shape[0])) / x.shape[0]  # (D,)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def reference_embedding(embedding, anchors):
    """h_psi(A): Linear-BN-ReLU twice, then Conv1x1(no bias)-BN-ReLU (the dense form)."""
    x = anchors
    for lin, bn in ((embedding.linear[0], embedding.linear[1]),
                    (embedding.linear[3], embedding.linear[4])):  # fmt: skip
        x = torch.relu(_batch_norm_train(x @ lin.weight.T + lin.bias, bn))
    conv, bn = embedding.conv[0], embedding.conv[1]
    return torch.relu(_batch_norm_train(x @ conv.weight[:, :, 0, 0].T, bn))  # (C, D)


class ReferenceSAR:
    """One SAR training step per call, with its own EMA state, in float64, loop by loop."""

    def __init__(self, tau, delta, alpha, lambda_aux, lambda_p2a):
        self.tau, self.delta, self.alpha = tau, delta, alpha
        self.lambda_aux, self.lambda_p2a = lambda_aux, lambda_p2a
        self.semantic = None  # A_hat, set on the first open gate

    def __call__(self, features, labels, embedding, anchors, head):
        emb = reference_embedding(embedding, anchors)  # (C, D)
        logits = emb @ head.weight[:, :, 0, 0].T + head.bias  # (C, C)
        log_p, p = [], []
        for c in range(C):
            row = logits[c]
            lse = torch.log(sum(torch.exp(row[k] - row.max()) for k in range(C))) + row.max()
            log_p.append(row[c] - lse)
            p.append(torch.exp(row[c] - lse))
        # Eq. 6: confident anchors get weight 1 (log 1 = 0); Eq. 7: normalised logs; Eq. 5.
        w_raw = [torch.ones_like(p[c]) if p[c] > self.tau else p[c] for c in range(C)]
        denominator = sum(torch.log(v) for v in w_raw) + 1e-9
        loss_aux = sum(torch.log(w_raw[c]) / denominator * -log_p[c] for c in range(C))
        # Gate: every anchor argmax-correct and above delta.
        gate = all(
            int(torch.argmax(logits[c])) == c and float(p[c].detach()) > self.delta
            for c in range(C)
        )
        loss_p2a = torch.zeros((), dtype=torch.float64)
        if gate:
            new = emb.detach().clone()
            self.semantic = (
                new
                if self.semantic is None
                else self.alpha * self.semantic + (1 - self.alpha) * new
            )
            total, count = torch.zeros((), dtype=torch.float64), 0
            for b in range(B):
                for i in range(h):
                    for j in range(w):
                        y = int(labels[b, (i * H) // h, (j * W) // w])  # nearest resize
                        if y == 255:
                            continue
                        diff = features[b, :, i, j] - self.semantic[y]  # (D,)
                        total = total + (diff**2).sum() / D
                        count += 1
            loss_p2a = total / count if count else total
        return self.lambda_aux * loss_aux + self.lambda_p2a * loss_p2a, gate


# ----------------------------------------------------------------------------- the comparison
def _relative(ours: torch.Tensor, ref: torch.Tensor, floor: float) -> float:
    """Max abs difference over the reference's max abs value (at least ``floor``).

    The floor (a thousandth of the step's largest gradient) keeps gradients that are 0 in exact
    arithmetic (the Linear biases before a BatchNorm: ~1e-17 of round-off) from dominating.
    """
    return (ours - ref).abs().max().item() / max(ref.abs().max().item(), floor)


def _set_head(head, emb, probs):
    """Weights that make ``head(emb)`` give exactly ``log(probs)`` (emb has full row rank)."""
    target = torch.tensor(probs, dtype=torch.float64).log()  # (C, C)
    with torch.no_grad():
        head.weight.copy_((torch.linalg.pinv(emb) @ target).T[:, :, None, None])
        head.bias.zero_()


def run_comparison(tau=0.9, delta=0.8, momentum=0.9, lambda_aux=1.0, lambda_p2a=0.1):
    """Max relative difference (over steps and tensors) of SAR against the reference."""
    torch.manual_seed(0)
    sar = SemanticAnchorRegularizer(
        C, D, tau=tau, delta=delta, momentum=momentum, lambda_aux=lambda_aux,
        lambda_p2a=lambda_p2a,
    ).double()  # fmt: skip
    head = torch.nn.Conv2d(D, C, 1).double()
    reference = ReferenceSAR(tau, delta, momentum, lambda_aux, lambda_p2a)
    params = [*sar.embedding.parameters(), *head.parameters()]
    worst, gates = 0.0, []
    for probs in SCHEDULE:
        features = torch.randn(B, D, h, w, dtype=torch.float64, requires_grad=True)
        labels = torch.randint(0, C, (B, H, W))
        labels[torch.rand(B, H, W) < 0.2] = 255
        _set_head(head, sar.embedded_anchors().detach(), probs)

        loss = sar(features, labels, head)
        grads = torch.autograd.grad(loss, [features, *params])
        ref_loss, gate = reference(features, labels, sar.embedding, sar.anchors, head)
        ref_grads = torch.autograd.grad(ref_loss, [features, *params], allow_unused=True)
        gates.append(gate)

        assert loss.dtype == torch.float64
        assert sar.last_stats["gate_open"] is gate
        ref_grads = [
            torch.zeros_like(g) if r is None else r for g, r in zip(grads, ref_grads, strict=True)
        ]
        floor = 1e-3 * max(r.abs().max().item() for r in ref_grads)
        worst = max(worst, _relative(loss.detach(), ref_loss.detach(), 0.0))
        for ours, ref in zip(grads, ref_grads, strict=True):
            worst = max(worst, _relative(ours, ref, floor))
        if reference.semantic is not None:
            worst = max(worst, _relative(sar.semantic_anchors, reference.semantic, 0.0))
        with torch.no_grad():  # an SGD step moves the embedding, so the EMA has work to do
            for p, g in zip(sar.embedding.parameters(), grads[1:], strict=False):
                p.sub_(0.5 * g)
    return worst, gates


def test_float64_sar_equals_the_reference_every_step():
    worst, gates = run_comparison()
    # The schedule covers: closed, first open (copy), open (EMA), partly closed, open again.
    assert gates == [False, True, True, False, True, False, True]
    assert worst < RTOL, f"max relative difference {worst:.3e}"


@pytest.mark.parametrize(
    "options",
    [
        {"tau": 0.84},  # more anchors above tau: their CE weight is suppressed (Eq. 6)
        {"momentum": 0.0, "lambda_aux": 0.5, "lambda_p2a": 2.0},  # EMA = copy every open step
        {"tau": 1.0},  # nothing suppressed
    ],
)
def test_float64_sar_equals_the_reference_other_settings(options):
    worst, _ = run_comparison(**options)
    assert worst < RTOL, f"max relative difference {worst:.3e} with {options}"


def test_reference_aux_matches_hand_computed_value():
    """The reference itself: one closed step is the hand-computable Eq. 5-7 value."""
    torch.manual_seed(0)
    sar = SemanticAnchorRegularizer(C, D).double()
    head = torch.nn.Conv2d(D, C, 1).double()
    _set_head(head, sar.embedded_anchors().detach(), CLOSED)
    loss, gate = ReferenceSAR(0.9, 0.8, 0.999, 1.0, 0.1)(
        torch.randn(B, D, h, w, dtype=torch.float64), torch.zeros(B, H, W, dtype=torch.long),
        sar.embedding, sar.anchors, head,
    )  # fmt: skip
    p = [CLOSED[c][c] for c in range(C)]
    logs = [math.log(v) for v in p]  # none above tau = 0.9
    expected = sum(lg / (sum(logs) + 1e-9) * -lg for lg in logs)
    assert not gate
    assert math.isclose(loss.item(), expected, rel_tol=1e-12)
