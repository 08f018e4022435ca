"""CIFAR-100 / CIFAR-100-LT and CUB-200-2011 readers on fixtures written in their layouts."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from semantic_anchors.data import build_dataset, longtail_counts
from semantic_anchors.data._safe_pickle import UnsafePickleError, safe_pickle_load
from semantic_anchors.data.datasets.cifar import load_cifar_pickle
from tests._helpers.writers import write_cifar100, write_cub


def test_cifar100_items(cifar_root):
    train = build_dataset("cifar100", root=cifar_root)
    test = build_dataset("cifar100", root=cifar_root / "cifar-100-python", split="test")
    assert (len(train), len(test), train.num_classes) == (300, 200, 100)
    assert train.class_names[:2] == ["class_000", "class_001"]
    image, target = train[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and isinstance(target, int)
    # the fixture writes the class into the first red pixel: images and labels stay paired
    assert all(int(train[i][0][0, 0, 0]) == train.targets[i] for i in range(len(train)))
    assert test.class_frequencies == [3] * 100
    assert len(build_dataset("cifar100", root=cifar_root, split="val")) == 200


def test_cifar100_lt_10847(tmp_path):
    counts = longtail_counts(500, 100, 100)
    write_cifar100(tmp_path, train_per_class=counts, test_per_class=1)
    train = build_dataset("cifar100-lt", root=tmp_path)
    assert len(train) == 10847
    assert np.bincount(train.targets, minlength=100).tolist() == counts
    val = build_dataset("cifar100-lt", root=tmp_path, split="val")
    assert len(val) == 100 and val.class_frequencies == counts
    assert val.groups["head"] == list(range(33)) and val.groups["tail"] == list(range(67, 100))
    assert all(int(train[i][0][0, 0, 0]) == train.targets[i] for i in range(0, len(train), 97))


def test_cifar100_lt_seeded(cifar_root):
    a = build_dataset("cifar100-lt", root=cifar_root, imbalance_factor=3, n_max=3, seed=1)
    b = build_dataset("cifar100-lt", root=cifar_root, imbalance_factor=3, n_max=3, seed=1)
    assert np.array_equal(a.images, b.images) and a.targets == b.targets
    assert np.bincount(a.targets, minlength=100).tolist() == longtail_counts(3, 100, 3)
    with pytest.raises(ValueError, match="counts"):
        build_dataset("cifar100-lt", root=cifar_root)  # IF=100 needs 500 images of class 0


def test_cifar_corrupt_pickle(cifar_root):
    (cifar_root / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar-100-python/test"):
        build_dataset("cifar100", root=cifar_root, split="test")
    (cifar_root / "cifar-100-python" / "train").unlink()
    with pytest.raises(FileNotFoundError, match="cifar-100-python/train"):
        build_dataset("cifar100", root=cifar_root)


class _Exploit:
    """Unpickling this runs ``func(*args)``: what a crafted dataset file would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _exploits(marker):
    command = f"touch {marker}"
    return {
        "os.system": _Exploit(os.system, command),
        "eval": _Exploit(eval, f"open({str(marker)!r}, 'w').close()"),
        "exec": _Exploit(exec, f"open({str(marker)!r}, 'w').close()"),
        # a gadget: getattr(__import__("os"), "system") would hand out os.system
        "getattr": _Exploit(getattr, _Exploit(__import__, "os"), "system"),
    }


@pytest.mark.parametrize("kind", ["os.system", "eval", "exec", "getattr"])
@pytest.mark.parametrize("file", ["meta", "train"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_crafted_cifar_pickle_is_refused_and_runs_nothing(
    cifar_root, tmp_path, kind, file, protocol
):
    marker = tmp_path / "pwned"
    base = cifar_root / "cifar-100-python"
    exploit = _exploits(marker)[kind]
    payload = {b"fine_label_names": exploit, b"data": exploit, b"fine_labels": [0]}
    (base / file).write_bytes(pickle.dumps(payload, protocol=protocol))
    if kind in ("os.system", "eval"):  # the file is a real exploit for an unrestricted loader
        pickle.loads((base / file).read_bytes())
        assert marker.exists()
        marker.unlink()
    with pytest.raises(ValueError, match=rf"refusing to load '.*cifar-100-python/{file}': it "
                       r"references the global (posix|builtins|__builtin__)\.\w+, which a data file never "
                       r"needs \(allowed: builtin containers") as info:  # fmt: skip
        build_dataset("cifar100", root=cifar_root)
    assert isinstance(info.value, UnsafePickleError)
    assert not marker.exists()


def _py2_cifar_pickle(content) -> bytes:
    """A pickle as Python 2 + numpy 1.x wrote the official files: protocol 2, ``str`` as
    BINSTRING opcodes (read back with ``encoding="latin1"``), ``numpy.core`` module names."""

    class Py2Pickler(pickle._Pickler):
        dispatch = pickle._Pickler.dispatch.copy()

        def save_str8(self, obj):
            if len(obj) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
            else:
                self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
            self.memoize(obj)

        dispatch[bytes] = save_str8

    import io

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(content)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_python2_style_cifar_pickles_load(tmp_path):
    """What the real cifar-100-python files need: containers, py2 str, numpy.core arrays."""
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 200), ("test", 100)):
        labels = np.arange(n) % 100
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[:, 0] = labels
        blob = _py2_cifar_pickle({
            b"filenames": [b"img_%d.png" % i for i in range(n)], b"batch_label": b"batch 1",
            b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist(),
            b"data": data,
        })  # fmt: skip
        assert b"cnumpy.core.multiarray\n_reconstruct" in blob and b"_codecs" not in blob
        (base / name).write_bytes(blob)
        loaded = load_cifar_pickle(base / name)
        assert np.array_equal(loaded["data"], data) and loaded["data"].dtype == np.uint8
    names = [b"class_%03d" % i for i in range(100)]
    (base / "meta").write_bytes(_py2_cifar_pickle({b"fine_label_names": names}))
    train = build_dataset("cifar100", root=tmp_path)
    assert len(train) == 200 and train.class_names[7] == "class_007"
    assert all(int(train[i][0][0, 0, 0]) == train.targets[i] for i in range(len(train)))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_pickle_loads_arrays_and_containers_of_every_protocol(tmp_path, protocol):
    content = {
        b"data": np.arange(24, dtype=np.uint8).reshape(4, 6), "f": np.linspace(0, 1, 5),
        "scalar": np.int64(3), "names": ["a", b"b"], "t": (1, None, True, 2.5),
        "s": {1, 2}, "fs": frozenset({3}), "ba": bytearray(b"xy"),
    }  # fmt: skip
    (tmp_path / "p").write_bytes(pickle.dumps(content, protocol=protocol))
    out = safe_pickle_load(tmp_path / "p", encoding="latin1")
    assert out.keys() == content.keys()
    for key, value in content.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(out[key], value) and out[key].dtype == value.dtype
        else:
            assert out[key] == value


def test_safe_pickle_refuses_codecs_tricks(tmp_path):
    # _codecs.encode is allowed for the latin1 bytes of protocol 2, not for other codecs.
    import _codecs

    (tmp_path / "p").write_bytes(pickle.dumps(_Exploit(_codecs.encode, "x", "rot13"), protocol=2))
    with pytest.raises(ValueError, match=r"_codecs.encode is only allowed for str in latin1"):
        safe_pickle_load(tmp_path / "p")


def test_cub(tmp_path):
    base = write_cub(tmp_path)
    train = build_dataset("cub200", root=tmp_path)
    test = build_dataset("cub200", root=base, split="test")
    assert (len(train), len(test), train.num_classes) == (6, 3, 3)
    assert train.class_names == ["Bird_1", "Bird_2", "Bird_3"]
    assert train.targets == [0, 0, 1, 1, 2, 2] and test.targets == [0, 1, 2]
    image, target = train[2]
    assert image.shape == (3, 21, 26) and image.dtype == torch.uint8 and target == 1
    assert test.class_frequencies == [2, 2, 2]


def test_cub_errors(tmp_path):
    base = write_cub(tmp_path)
    train = build_dataset("cub200", root=tmp_path)
    train.paths[0].write_bytes(b"\x00\x01broken")
    with pytest.raises(ValueError, match="Bird_1_0001.jpg"):
        train[0]
    train.paths[1].unlink()
    with pytest.raises(FileNotFoundError, match="Bird_1_0002.jpg"):
        train[1]
    (base / "train_test_split.txt").write_text("1 0\n")
    with pytest.raises(ValueError, match="train_test_split"):
        build_dataset("cub200", root=tmp_path)
    (base / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        build_dataset("cub200", root=tmp_path)
