import torch

from semantic_anchors.train.data import (
    AnchorDataModule,
    SeededDataset,
    ShardSampler,
    StepBatchSampler,
)


def first_batches(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_batches_are_a_function_of_seed_and_step():
    a = first_batches(StepBatchSampler(10, 4, seed=1), 6)
    b = first_batches(StepBatchSampler(10, 4, seed=1, start_step=lambda: 3), 3)
    assert a[3:] == b
    assert first_batches(StepBatchSampler(10, 4, seed=2), 6) != a
    # Each pass over the data is a permutation: positions 0..9 cover every index once.
    flat = [index for batch in a for index, _ in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    seeds = [seed for batch in a for _, seed in batch]
    assert len(set(seeds)) == len(seeds)


def test_ranks_split_each_global_batch():
    single = first_batches(StepBatchSampler(12, 4, seed=0), 3)
    r0 = first_batches(StepBatchSampler(12, 2, seed=0, rank=0, world_size=2), 3)
    r1 = first_batches(StepBatchSampler(12, 2, seed=0, rank=1, world_size=2), 3)
    assert [x + y for x, y in zip(r0, r1, strict=True)] == single


def test_shard_sampler_covers_once_without_padding():
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    assert [len(s) for s in shards] == [3, 2, 2]


def test_seeded_dataset_makes_augmentation_a_function_of_the_seed():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(1), i

    def transform(image, target):
        return image + torch.rand(1), target

    ds = SeededDataset(Noisy(), transform)
    state = torch.get_rng_state()
    first, second = ds[(1, 42)], ds[(1, 42)]
    assert torch.equal(first[0], second[0]) and not torch.equal(ds[(1, 43)][0], first[0])
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left untouched


def test_data_instances_gives_two_label_maps_to_the_training_batches():
    from semantic_anchors.train.config import load_config

    config = load_config(
        "synthlt-fcn-quick",
        ["data.instances=true", "data.options={num_images: 40}", "data.num_workers=0"],
    )
    dm = AnchorDataModule(config["data"], 0)
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert targets.dim() == 4 and targets.shape[1] == 2
    assert targets.shape[-2:] == images.shape[-2:]
    kept = targets[:, 0] != 255
    assert (targets[:, 1][~kept] == 255).all()  # padding is in no segment
    assert dm.info()["num_classes"] == dm.train_set.num_classes
