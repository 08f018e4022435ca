"""Tiny, fast training settings shared by the training tests."""

TINY = [
    "data.options={num_images: 48}",
    "data.val_options={num_images: 20}",
    "data.batch_size=8",
    "data.val_batch_size=8",
    "data.num_workers=0",
    "trainer.progress_bar=false",
    "trainer.log_every=1",
]
