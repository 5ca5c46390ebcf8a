"""Teachers and students: seeded heads, LxH shapes, truncation for BERT and MPNet, spec validation."""

from __future__ import annotations

import pytest
import torch

from makd import models
from makd.errors import UsageError


@pytest.mark.parametrize("spec,layers,hidden,heads", [("2x128", 2, 128, 2), ("4x312", 4, 312, 4), ("1x64", 1, 64, 1)])
def test_shape_students_follow_the_bert_recipe(spec, layers, hidden, heads, tiny_bert_dir):
    model, tok = models.build_student(spec, 3, seed=0, tokenizer=str(tiny_bert_dir))
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (
        layers, hidden, heads, 4 * hidden)
    assert c.num_labels == 3 and c.vocab_size == len(tok)


def test_shape_student_is_seeded(tiny_bert_dir):
    a, _ = models.build_student("2x64", 2, seed=3, tokenizer=str(tiny_bert_dir))
    b, _ = models.build_student("2x64", 2, seed=3, tokenizer=str(tiny_bert_dir))
    c, _ = models.build_student("2x64", 2, seed=4, tokenizer=str(tiny_bert_dir))
    wa, wb, wc = (m.classifier.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_shape_student_defaults_to_the_minilm_tokenizer(minilm_dir):
    _, tok = models.build_student("1x64", 2)
    assert tok.vocab_size == 30522 and tok.tokenize("hello world") == ["hello", "world"]


@pytest.mark.parametrize("spec", ["3x", "x128", "0x128", "2x0", "2x200", "m@", "m@a,b", "m@5,1", "m@0:4:0",
                                  "zoo:nope", "/no/such/dir"])
def test_bad_student_specs_name_the_field(spec):
    with pytest.raises(UsageError) as err:
        models.describe_student(spec)
    assert err.value.field == "student"


def test_describe_student_kinds():
    assert models.describe_student("2x128") == {"kind": "shape", "layers": 2, "hidden": 128}
    assert models.describe_student("zoo:minilm-l6@0,5")["keep"] == (0, 5)
    assert models.describe_student("org/model")["kind"] == "pretrained"


def test_teacher_head_is_seeded_and_the_encoder_is_pretrained(tiny_bert_dir):
    before = models.TEACHER_LOADS
    a, _ = models.load_teacher(str(tiny_bert_dir), 3, head_seed=0)
    b, _ = models.load_teacher(str(tiny_bert_dir), 3, head_seed=0)
    c, _ = models.load_teacher(str(tiny_bert_dir), 3, head_seed=1)
    assert models.TEACHER_LOADS == before + 3
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert torch.equal(a.bert.pooler.dense.weight, b.bert.pooler.dense.weight)  # absent pooler: seeded too
    from transformers import AutoModel
    encoder = AutoModel.from_pretrained(str(tiny_bert_dir))
    assert torch.equal(a.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_teacher_with_its_own_head_keeps_it_only_when_fine_tuned(tiny_bert_dir, tmp_path):
    trained, _ = models.build_student(str(tiny_bert_dir), 2, seed=7)
    with torch.no_grad():
        trained.classifier.weight.fill_(0.5)
    trained.save_pretrained(str(tmp_path / "ft"))
    ft, _ = _load_with_tokenizer(tmp_path / "ft", tiny_bert_dir, fine_tuned=True)
    assert torch.all(ft.classifier.weight == 0.5)
    fresh, _ = _load_with_tokenizer(tmp_path / "ft", tiny_bert_dir, fine_tuned=False)
    assert not torch.all(fresh.classifier.weight == 0.5)
    with pytest.raises(UsageError, match="fine_tuned=true"):
        models.load_teacher(str(tiny_bert_dir), 2, fine_tuned=True)


def test_a_fine_tuned_teacher_whose_labels_are_in_another_order_is_refused_in_one_line(tiny_bert_dir, tmp_path):
    """Its head's output 0 means its config's id2label[0]: read under the task's order it would swap the teacher's
    probabilities silently. Generic names (LABEL_0, ...) cannot be checked; case does not matter."""
    trained, _ = models.build_student(str(tiny_bert_dir), 2, seed=7)
    for name, id2label in (("swapped", {0: "positive", 1: "negative"}), ("same", {0: "NEGATIVE", 1: "Positive"}),
                           ("generic", {0: "LABEL_0", 1: "LABEL_1"})):
        trained.config.id2label = id2label
        trained.config.label2id = {v: k for k, v in id2label.items()}
        trained.save_pretrained(str(tmp_path / name))
    with pytest.raises(UsageError) as err:
        _load_with_tokenizer(tmp_path / "swapped", tiny_bert_dir, fine_tuned=True, labels=("negative", "positive"))
    assert err.value.field == "teacher" and "\n" not in str(err.value)
    assert "['positive', 'negative'] in that order" in str(err.value) and "`labels:`" in str(err.value)
    for name in ("same", "generic"):
        _load_with_tokenizer(tmp_path / name, tiny_bert_dir, fine_tuned=True, labels=("negative", "positive"))
    _load_with_tokenizer(tmp_path / "swapped", tiny_bert_dir, fine_tuned=False, labels=("negative", "positive"))


def test_an_exported_student_names_the_tasks_labels(tiny_bert_dir, tmp_path):
    """`makd export` and the fine-tuned teacher cache save a classifier whose config says what each output means (the
    check above then holds for makd's own fine-tuned teachers)."""
    from transformers import AutoConfig

    from makd.config import TrainConfig

    model, _ = models.build_student(str(tiny_bert_dir), 2, seed=0)
    torch.save({"model": model.state_dict()}, tmp_path / "weights.pt")
    cfg = TrainConfig(task="rte", student=str(tiny_bert_dir), loss="ce", lam=1.0)
    models.save_student(cfg, tmp_path / "weights.pt", tmp_path / "out")
    from makd.tasks import get_task

    assert AutoConfig.from_pretrained(tmp_path / "out").id2label == dict(enumerate(get_task("rte").labels))


def _load_with_tokenizer(model_dir, tokenizer_dir, **kw):
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(model_dir))
    return models.load_teacher(str(model_dir), 2, **kw)


def test_missing_teacher_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as err:
        models.load_teacher(str(tmp_path / "nothing"), 2)
    assert err.value.field == "teacher"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="config.json"):
        models.model_digest(str(tmp_path / "empty"))


@pytest.mark.parametrize("fixture,keep_spec,keep", [("tiny_bert4_dir", "1,3", (1, 3)),
                                                    ("tiny_mpnet_dir", "0:4:2", (0, 2))])
def test_truncated_student_copies_the_chosen_layers(fixture, keep_spec, keep, request):
    from transformers import AutoModel

    base_dir = request.getfixturevalue(fixture)
    model, _ = models.build_student(f"{base_dir}@{keep_spec}", 2, seed=0)
    full = AutoModel.from_pretrained(str(base_dir))
    assert model.config.num_hidden_layers == len(keep)
    src_layers = full.encoder.layer
    dst_layers = model.base_model.encoder.layer
    for new, old in enumerate(keep):
        for (n1, p1), (n2, p2) in zip(dst_layers[new].named_parameters(), src_layers[old].named_parameters(), strict=True):
            assert n1 == n2 and torch.equal(p1, p2)
    assert torch.equal(model.base_model.embeddings.word_embeddings.weight, full.embeddings.word_embeddings.weight)


def test_truncation_beyond_depth_is_refused(tiny_bert4_dir):
    with pytest.raises(UsageError, match="only 4 layers"):
        models.build_student(f"{tiny_bert4_dir}@0,7", 2)


def test_truncate_state_dict_renumbers_bert_and_mpnet_keys():
    state = {"encoder.layer.0.w": 0, "encoder.layer.3.w": 3, "encoder.layer.10.w": 10, "embeddings.w": -1,
             "encoder.relative_attention_bias.weight": -2}
    out = models.truncate_state_dict(state, (3, 10))
    assert out == {"encoder.layer.0.w": 3, "encoder.layer.1.w": 10, "embeddings.w": -1,
                   "encoder.relative_attention_bias.weight": -2}


def test_fingerprint_changes_when_weights_are_resaved(tiny_bert_dir, tmp_path):
    import shutil
    import time
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_dir, copy)
    first = models.model_digest(str(copy))
    assert models.model_digest(str(copy)) == first
    time.sleep(0.01)
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes())
    assert models.model_digest(str(copy)) != first
    assert models.model_digest("org/model") == "hub:org/model"


def test_mpnet_teacher_with_bert_student_tokenizers_differ(tiny_mpnet_dir, tiny_bert_dir):
    """MPNet teacher -> BERT student: each tokenizes the raw text its own way."""
    teacher, t_tok = models.load_teacher(str(tiny_mpnet_dir), 2)
    _, s_tok = models.build_student("1x64", 2, tokenizer=str(tiny_bert_dir))
    text = ("a fine film", "not a fine film")
    t_ids, s_ids = t_tok(*text)["input_ids"], s_tok(*text)["input_ids"]
    assert t_ids != s_ids and t_tok.decode(t_ids[1:4]) == s_tok.decode(s_ids[1:4])
    with torch.no_grad():
        out = teacher(**t_tok(*text, return_tensors="pt")).logits
    assert out.shape == (1, 2)
