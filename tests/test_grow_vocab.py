"""init_grow_vocab: fine-tuning a model whose vocabulary is smaller than the task's (the released
polynomial model has 64 ids, A_5 needs 67 and S_5 127). Growing must not change what the model
computes on the ids it had; without the key the refusal names it."""

import json
import sys

import pytest
import torch

from datasets_builders import tasks
from modeling import IterGPTForCausalLM
from training.config import ConfigError, compose, validate
from training.loop import grow_vocab, resolve
from helpers import run_cli, tiny_model

S5 = tasks.make_task("symmetric5").vocab_size  # 127


@pytest.mark.parametrize("tied", [False, True])
def test_growing_keeps_every_old_row_and_the_old_ids_logits(tied):
    model = tiny_model(tie_word_embeddings=tied)
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(0, tasks.VOCAB_SIZE, (3, 12))  # old tokens only
    with torch.no_grad():
        before = model(ids).logits  # (B, T, 64)
    torch.manual_seed(1)
    assert grow_vocab(model, S5) == (64, S5)
    assert model.config.vocab_size == S5
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape == head.shape == (S5, 32)
    assert torch.equal(emb[:64], old["model.embed.weight"])  # bit-identical
    assert torch.equal(head[:64], old["model.embed.weight" if tied else "lm_head.weight"])
    assert (emb.data_ptr() == head.data_ptr()) == tied  # tying survives the growth
    for name, p in model.named_parameters():  # every other weight untouched
        if name not in ("model.embed.weight", "lm_head.weight"):
            assert torch.equal(p, old[name]), name
    new = emb[64:].detach()
    std = model.config.initializer_range
    assert abs(new.mean().item()) < std / 2 and 0.8 * std < new.std().item() < 1.2 * std  # N(0, 0.02), not the old rows' mean
    with torch.no_grad():
        after = model(ids).logits  # (B, T, 127)
    assert torch.equal(after[..., :64], before)  # the old ids' logits, bit for bit
    assert grow_vocab(model, 64) == (S5, S5)  # never shrinks


def test_without_the_key_the_refusal_names_it(tmp_path):
    tiny_model().save_pretrained(tmp_path / "small")
    args = ["recipe=parity_finetune", f"init_from={tmp_path / 'small'}", "data.task=symmetric5", "data.max_length=5"]
    with pytest.raises(ConfigError, match=r"64 ids but this run's task needs 127.*set init_grow_vocab=true"):
        resolve(compose(args))
    assert resolve(compose(args + ["init_grow_vocab=true"])).init_grow_vocab
    with pytest.raises(ConfigError, match="init_grow_vocab=true .*give init_from"):
        validate(compose(["recipe=parity", "init_grow_vocab=true"]))


@pytest.mark.integration
def test_a_fine_tune_with_growth_trains_records_it_and_saves_a_loadable_model(tmp_path):
    tiny_model().save_pretrained(tmp_path / "small")
    out = tmp_path / "ft"
    res = run_cli([sys.executable, "train.py", "recipe=parity_finetune", f"init_from={tmp_path / 'small'}",
                   "init_grow_vocab=true", "data.task=symmetric5", "data.max_length=5", f"output_dir={out}",
                   "optim.max_steps=6", "eval_every=3", "eval_per_length=16", "eval_heads=false",
                   "target_accuracy=null", "max_minutes=null", "report_to=none", "progress=false"], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "init_grow_vocab: grew" in res.stdout and "from 64 to 127 ids" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["steps"], summary["init_vocab_size"], summary["vocab_size"]) == (6, 64, S5)
    assert "init_grow_vocab: true" in (out / "train_config.yaml").read_text()
    model = IterGPTForCausalLM.from_pretrained(out / "final")
    assert model.config.vocab_size == S5
    with torch.no_grad():
        logits = model(torch.tensor([[tasks.BOS_ID, 70, 126, tasks.EOI_ID]])).logits  # ids past 63
    assert logits.shape == (1, 4, S5) and torch.isfinite(logits).all()
