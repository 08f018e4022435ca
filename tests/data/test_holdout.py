import pytest
import torch

from semantic_anchors.data.holdout import HoldoutSubset, holdout_indices


def test_a_plain_split_is_a_partition_fixed_by_its_seed():
    kept, held = holdout_indices(50, 0.2, seed=3)
    assert len(held) == 10 and len(kept) == 40
    assert sorted(kept + held) == list(range(50)) and not set(kept) & set(held)
    assert holdout_indices(50, 0.2, seed=3) == (kept, held)
    assert holdout_indices(50, 0.2, seed=4)[1] != held
    # rounding, and never an empty part
    assert [len(holdout_indices(n, f)[1]) for n, f in [(2, 0.01), (2, 0.99), (7, 0.5), (9, 0.3)]] == [
        1, 1, 4, 3,
    ]  # fmt: skip


def test_a_stratified_split_holds_out_a_share_of_every_class():
    counts = {0: 10, 1: 5, 2: 2, 3: 1, 4: 20}
    targets = [label for label, n in counts.items() for _ in range(n)]
    gen = torch.Generator().manual_seed(0)
    targets = [targets[i] for i in torch.randperm(len(targets), generator=gen)]
    kept, held = holdout_indices(len(targets), 0.2, seed=1, targets=targets)
    assert sorted(kept + held) == list(range(len(targets)))
    held_counts = {c: sum(targets[i] == c for i in held) for c in counts}
    # by hand: round(0.2 n), at least one and at most n - 1; a single item stays in training
    assert held_counts == {0: 2, 1: 1, 2: 1, 3: 0, 4: 4}
    assert {targets[i] for i in kept} == set(counts)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 0.0), r"fraction in \(0, 1\)"),
        ((10, 1.0), r"fraction in \(0, 1\)"),
        ((10, True), r"fraction in \(0, 1\)"),
        ((1, 0.5), "at least 2 items"),
        ((3, 0.5, 0, [0, 1]), "2 labels for a dataset of 3 items"),
        ((3, 0.5, 0, [0, 1, 2]), "no class has two items"),
    ],
)
def test_bad_splits_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        holdout_indices(*args)


class _Labelled(torch.utils.data.Dataset):
    task, class_names, class_frequencies = "classification", ["a", "b"], [3, 3]

    def __init__(self):
        self.targets = [0, 1, 0, 1, 0, 1]

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return torch.full((1,), float(index)), self.targets[index]


def test_a_part_indexes_its_items_and_keeps_the_whole_sets_attributes():
    base = _Labelled()
    part = HoldoutSubset(base, [1, 4, 5], "holdout")
    assert len(part) == 3 and part.targets == [1, 0, 1]
    assert [float(part[i][0]) for i in range(3)] == [1.0, 4.0, 5.0] and float(part[-1][0]) == 5.0
    assert part.task == "classification" and part.class_frequencies == [3, 3]
    with pytest.raises(IndexError, match="holdout part of 3"):
        part[3]
    with pytest.raises(AttributeError):
        part.no_such_attribute  # noqa: B018


def test_the_data_module_validates_on_held_out_training_images(monkeypatch):
    from semantic_anchors.data import build_dataset
    from semantic_anchors.train import data as train_data
    from semantic_anchors.train.config import load_config

    built = []

    def spy(name, root=None, split="train", **kwargs):
        built.append(split)
        return build_dataset(name, root=root, split=split, **kwargs)

    monkeypatch.setattr(train_data, "build_dataset", spy)
    cfg = load_config("synthlt-fcn-quick", ["data.options={num_images: 20}", "data.holdout=0.25"])
    module = train_data.AnchorDataModule(cfg["data"], seed=5)
    assert built == ["train"]  # the reported validation split is never read
    full = build_dataset("synthlt", split="train", num_images=20)
    kept, held = holdout_indices(20, 0.25, seed=0)
    assert module.train_set.indices == kept and module.val_set.indices == held
    image, target = module.val_set[0]
    assert torch.equal(image, full[held[0]][0]) and torch.equal(target, full[held[0]][1])
    assert module.class_frequencies == [float(v) for v in full.class_frequencies]
    # the split does not follow the run's seed, only data.holdout_seed
    other = train_data.AnchorDataModule(cfg["data"], seed=6)
    assert other.val_set.indices == held
    cfg["data"]["holdout_seed"] = 1
    assert train_data.AnchorDataModule(cfg["data"], seed=5).val_set.indices != held


@pytest.mark.parametrize("value", ["1.0", "0", "-0.1"])
def test_the_config_refuses_a_holdout_outside_the_open_interval(value):
    from semantic_anchors.train.config import load_config

    with pytest.raises(ValueError, match="data.holdout"):
        load_config("synthlt-fcn-quick", [f"data.holdout={value}"])
