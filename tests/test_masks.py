"""makd.masks hands BERT and MPNet the 4-D attention mask their forward would build (so that on a GPU the forward
does not stop for transformers' `padding_mask.all()` check): the logits must not change. On the box,
tests/test_gpu.py also checks that a CUDA training step then runs with no host-device synchronisation."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import sentiment


def encoder_and_batch(model_dir, n: int = 6):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from makd.batching import collate, encode

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2).eval()
    encoded = encode(AutoTokenizer.from_pretrained(str(model_dir)), sentiment(n), 32)
    return model, encoded, collate(encoded, list(range(n)))


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_expanded_mask_gives_the_logits_of_the_padding_mask(arch, tiny_bert_dir, tiny_mpnet_dir):
    from makd.masks import expand_attention_mask

    model, _, batch = encoder_and_batch(tiny_bert_dir if arch == "bert" else tiny_mpnet_dir)
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding for the check to mean anything"
    expanded = expand_attention_mask(model, batch)
    assert expanded["attention_mask"].ndim == 4 and batch["attention_mask"].ndim == 2
    with torch.no_grad():  # the encoder's states (a tiny random head's logits are all near 0: too blunt a check)
        plain, built = (model.base_model(**b).last_hidden_state for b in (batch, expanded))
        unmasked = model.base_model(**{**batch, "attention_mask": torch.ones_like(batch["attention_mask"])})
    torch.testing.assert_close(built, plain, rtol=0, atol=1e-6)
    # and padding still matters: a mask that lets every position attend gives other states
    assert not torch.allclose(unmasked.last_hidden_state, plain, atol=1e-3)


def test_model_batch_keeps_the_padding_mask_on_cpu_and_other_models_are_left_alone(tiny_bert_dir):
    from makd.masks import expand_attention_mask, model_batch

    model, encoded, batch = encoder_and_batch(tiny_bert_dir)
    on_cpu = model_batch(model, encoded, list(range(6)), torch.device("cpu"))
    assert on_cpu["attention_mask"].ndim == 2  # CPU runs keep transformers' own path (and their old numbers)
    assert torch.equal(on_cpu["input_ids"], batch["input_ids"])

    class NotAnEncoder(torch.nn.Module):  # a model whose module has no create_bidirectional_mask
        config = model.config
        dtype = torch.float32

    assert expand_attention_mask(NotAnEncoder(), batch) is batch
