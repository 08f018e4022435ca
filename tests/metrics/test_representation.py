"""Representation diagnostics against slow numpy loops."""

import math

import numpy as np
import pytest
import torch

from semantic_anchors.metrics import (
    FeatureStatistics,
    class_centers,
    cosine_similarity_matrix,
    inter_class_separability,
    intra_class_compactness,
    pairwise_center_distances,
    relationship_consistency,
)

C, D = 5, 4  # class 3 is absent


def _vectors(seed=0, n=60):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 1, 2, 4])[torch.randint(0, 4, (n,), generator=gen)]
    features = torch.randn(n, D, generator=gen) + 3 * labels[:, None].float()
    labels[:5] = 255
    return features, labels


def _loop_reference(features, labels):
    """Per-class centres / compactness and the Fisher ratio, one sample at a time."""
    x = features.double().numpy()
    y = labels.numpy()
    valid = [i for i in range(len(y)) if y[i] != 255]
    centers = np.full((C, D), np.nan)
    compactness = np.full(C, np.nan)
    for c in range(C):
        members = [x[i] for i in valid if y[i] == c]
        if members:
            centers[c] = np.mean(members, axis=0)
            compactness[c] = np.mean([np.sum((m - centers[c]) ** 2) for m in members])
    mu = np.mean([x[i] for i in valid], axis=0)
    s_w = np.zeros((D, D))
    s_b = np.zeros((D, D))
    for i in valid:
        d = (x[i] - centers[y[i]])[:, None]
        s_w += d @ d.T
    for c in range(C):
        n_c = sum(1 for i in valid if y[i] == c)
        if n_c:
            d = (centers[c] - mu)[:, None]
            s_b += n_c * d @ d.T
    present = [c for c in range(C) if not np.isnan(centers[c, 0])]
    pair = [
        np.sqrt(np.sum((centers[a] - centers[b]) ** 2))
        for i, a in enumerate(present)
        for b in present[i + 1 :]
    ]
    return {
        "centers": centers,
        "compactness": compactness,
        "fisher_ratio": np.trace(s_b) / np.trace(s_w),
        "min_distance": min(pair),
        "mean_distance": np.mean(pair),
    }


def test_vector_diagnostics_match_loops():
    features, labels = _vectors()
    ref = _loop_reference(features, labels)
    np.testing.assert_allclose(
        class_centers(features, labels, C).numpy(), ref["centers"], rtol=1e-10
    )
    compact = intra_class_compactness(features, labels, C)
    np.testing.assert_allclose(compact["compactness"].numpy(), ref["compactness"], rtol=1e-10)
    assert float(compact["mean_compactness"]) == pytest.approx(np.nanmean(ref["compactness"]))
    sep = inter_class_separability(features, labels, C)
    for key in ("fisher_ratio", "min_distance", "mean_distance"):
        assert float(sep[key]) == pytest.approx(ref[key], rel=1e-10), key


def _nearest_resize_loop(labels, height, width):
    """Nearest-neighbour downsampling, src = floor(dst * in / out), as F.interpolate."""
    batch, in_h, in_w = labels.shape
    out = torch.empty(batch, height, width, dtype=labels.dtype)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                out[b, i, j] = labels[
                    b, math.floor(i * in_h / height), math.floor(j * in_w / width)
                ]
    return out


@pytest.mark.parametrize(
    ("size", "feat_size"), [((8, 8), (4, 4)), ((10, 7), (4, 3)), ((4, 4), (4, 4))]
)
def test_dense_features_use_nearest_resized_labels(size, feat_size):
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, C, (2, *size), generator=gen)
    labels[0, 0] = 255
    features = torch.randn(2, D, *feat_size, generator=gen)
    small = _nearest_resize_loop(labels, *feat_size)
    vectors = features.permute(0, 2, 3, 1).reshape(-1, D)
    ref = _loop_reference(vectors, small.reshape(-1))
    np.testing.assert_allclose(
        class_centers(features, labels, C).numpy(), ref["centers"], rtol=1e-10
    )
    sep = inter_class_separability(features, labels, C)
    assert float(sep["fisher_ratio"]) == pytest.approx(ref["fisher_ratio"], rel=1e-10)


def test_compactness_is_stable_far_from_origin():
    features, labels = _vectors(2)
    shifted = features.double() + 1e4
    ref = intra_class_compactness(features.double(), labels, C)["compactness"]
    got = intra_class_compactness(shifted, labels, C)["compactness"]
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_fewer_than_two_classes_gives_nan():
    features = torch.randn(6, D)
    sep = inter_class_separability(features, torch.zeros(6, dtype=torch.long), C)
    assert all(math.isnan(float(v)) for v in sep.values())
    compact = intra_class_compactness(features, torch.full((6,), 255), C)
    assert math.isnan(float(compact["mean_compactness"]))


def test_pairwise_and_cosine_match_loops():
    gen = torch.Generator().manual_seed(3)
    vectors = torch.randn(6, 3, generator=gen)
    vectors[2] = 0.0
    other = torch.randn(4, 3, generator=gen)
    v, o = vectors.double().numpy(), other.double().numpy()
    dist = np.array([[np.linalg.norm(a - b) for b in v] for a in v])
    np.testing.assert_allclose(
        pairwise_center_distances(vectors).numpy(), dist, rtol=1e-5, atol=1e-6
    )

    def cos(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 0.0 if na == 0 or nb == 0 else a @ b / (na * nb)

    np.testing.assert_allclose(
        cosine_similarity_matrix(vectors).numpy(),
        np.array([[cos(a, b) for b in v] for a in v]),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        cosine_similarity_matrix(vectors, other).numpy(),
        np.array([[cos(a, b) for b in o] for a in v]),
        atol=1e-6,
    )


def _upper(matrix):
    return matrix[np.triu_indices(matrix.shape[0], k=1)]


def _dist(m):
    return np.array([[np.linalg.norm(x - y) for y in m] for x in m])


def _cos_dist(m):
    return 1 - np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in m] for x in m])


def test_relationship_consistency_matches_corrcoef():
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    b = a + 0.7 * torch.randn(7, 5, generator=gen, dtype=torch.float64)
    expected = np.corrcoef(_upper(_dist(a.numpy())), _upper(_dist(b.numpy())))[0, 1]
    got = relationship_consistency(a, b)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    assert 0.0 < float(got) < 0.999

    expected_cos = np.corrcoef(_upper(_cos_dist(a.numpy())), _upper(_cos_dist(b.numpy())))[0, 1]
    assert float(relationship_consistency(a, b, metric="cosine")) == pytest.approx(
        expected_cos, rel=1e-8
    )

    # NaN centres (classes absent from one run) drop their pairs from both runs.
    b_nan = b.clone()
    b_nan[2] = math.nan
    keep = [i for i in range(7) if i != 2]
    expected_nan = np.corrcoef(_upper(_dist(a.numpy()[keep])), _upper(_dist(b.numpy()[keep])))[0, 1]
    assert float(relationship_consistency(a, b_nan)) == pytest.approx(expected_nan, rel=1e-10)


def test_relationship_consistency_invariant_to_rotation_and_scale():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    b = 3.0 * a @ rotation + 1.0
    assert float(relationship_consistency(a, b)) == pytest.approx(1.0, abs=1e-10)
    shuffled = a[torch.tensor([1, 0, 3, 2, 5, 4])]
    assert float(relationship_consistency(a, shuffled)) < 0.99
    assert math.isnan(float(relationship_consistency(a[:2], b[:2])))  # one pair only


@pytest.mark.parametrize("kind", ["orthogonal", "etf"])
def test_equidistant_anchors_have_no_relationship_to_correlate(kind):
    from semantic_anchors import make_anchors

    # float32 anchors: their pairwise distances differ only by rounding (~1e-7 relative), which a
    # plain Pearson correlation would turn into a random number in [-1, 1]
    fixed = [make_anchors(kind, 13, 32, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    assert math.isnan(float(relationship_consistency(fixed[0].double(), fixed[1].double())))
    real = torch.randn(13, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert math.isnan(float(relationship_consistency(real, fixed[0])))  # one side is enough
    # a set that is nearly, but measurably, not equidistant is still correlated
    bent = fixed[0].double().clone()
    bent[0] *= 1.01
    assert math.isfinite(float(relationship_consistency(bent, bent * 2)))


def test_feature_statistics_streams_like_one_batch():
    features, labels = _vectors(6, n=90)
    stats = FeatureStatistics(num_classes=C, feat_dim=D)
    for chunk in torch.arange(90).split(25):
        stats.update(features[chunk], labels[chunk])
    got = stats.compute()
    ref = _loop_reference(features, labels)
    np.testing.assert_allclose(got["centers"].numpy(), ref["centers"], rtol=1e-10)
    np.testing.assert_allclose(got["compactness"].numpy(), ref["compactness"], rtol=1e-10)
    for key in ("fisher_ratio", "min_distance", "mean_distance"):
        assert float(got[key]) == pytest.approx(ref[key], rel=1e-10), key
    assert got["counts"].tolist() == [int((labels == c).sum()) for c in range(C)]


def test_feature_statistics_dense_and_detached():
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(2, D, 3, 3, generator=gen, requires_grad=True)
    labels = torch.randint(0, C, (2, 6, 6), generator=gen)
    stats = FeatureStatistics(num_classes=C, feat_dim=D)
    stats.update(features, labels)
    torch.testing.assert_close(
        stats.compute()["centers"], class_centers(features.detach(), labels, C), equal_nan=True
    )
    assert not stats.sums.requires_grad


@pytest.mark.parametrize(
    ("features", "labels", "match"),
    [
        (torch.zeros(4, D), torch.zeros(5, dtype=torch.long), r"labels: expected shape \(4,\).*\(5,\)"),
        (torch.zeros(2, D, 3, 3), torch.zeros(3, 6, 6, dtype=torch.long), r"labels: expected shape \(2, H, W\)"),
        (torch.zeros(4, D, 3), torch.zeros(4, dtype=torch.long), r"features: expected shape \(N, D\) or \(B, D, h, w\)"),
        (torch.zeros(4, D, dtype=torch.long), torch.zeros(4, dtype=torch.long), r"features: expected a floating-point"),
        (torch.zeros(4, D), torch.zeros(4), r"labels: expected an integer tensor, received dtype torch.float32"),
        (torch.zeros(4, D), torch.tensor([0, 1, 5, 255]), r"labels: expected class labels in \[0, 5\).*\[5\]"),
        (torch.full((4, D), math.nan), torch.zeros(4, dtype=torch.long), r"features: expected finite"),
    ],
)  # fmt: skip
def test_rejects_bad_input(features, labels, match):
    with pytest.raises(ValueError, match=match):
        class_centers(features, labels, C)
    with pytest.raises(ValueError, match=match):
        FeatureStatistics(num_classes=C, feat_dim=D).update(features, labels)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"num_classes: expected an int >= 2"):
        class_centers(torch.zeros(2, D), torch.zeros(2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"feat_dim: expected an int >= 1, received 0"):
        FeatureStatistics(num_classes=C, feat_dim=0)
    with pytest.raises(ValueError, match=r"features: expected feature dimension 4.*\(3, 5\)"):
        FeatureStatistics(num_classes=C, feat_dim=D).update(
            torch.zeros(3, 5), torch.zeros(3, dtype=torch.long)
        )
    with pytest.raises(ValueError, match=r"centers_b: expected 3 classes.*received 4"):
        relationship_consistency(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"metric: expected 'euclidean' or 'cosine'"):
        relationship_consistency(torch.zeros(3, 2), torch.zeros(3, 2), metric="l1")
    with pytest.raises(ValueError, match=r"vectors: expected a floating-point \(C, D\) tensor"):
        cosine_similarity_matrix(torch.zeros(3))
    with pytest.raises(ValueError, match=r"other: expected feature dimension 2.*received 3"):
        cosine_similarity_matrix(torch.zeros(3, 2), torch.zeros(3, 3))


def test_chunked_float64_accumulation_matches(monkeypatch):
    import semantic_anchors.metrics._moments as moments

    features, labels = _vectors(8, n=50)
    whole = intra_class_compactness(features, labels, C)
    monkeypatch.setattr(moments, "_CHUNK", 7)
    chunked = intra_class_compactness(features, labels, C)
    torch.testing.assert_close(chunked["compactness"], whole["compactness"], equal_nan=True)
