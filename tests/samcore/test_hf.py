"""samcore.hf.SAMTrainer: Hugging Face Trainer steps equal samcore.train_step's (issue 18)."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from samcore import SAM, train_step  # noqa: E402
from samcore.hf import SAMTrainer  # noqa: E402

N, MICRO, ACCUM, STEPS, LR, RHO = 24, 4, 2, 3, 1e-3, 0.05


def _tiny_bert() -> torch.nn.Module:
    # No dropout: Trainer and train_step draw other random numbers between steps (shuffling),
    # so only a dropout-free model can be compared bit for bit; the masks are tested on
    # train_step (test_dropout_masks.py), and SAMTrainer replays with the same helper.
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def _examples() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (N, 8), generator=g)
    labels = torch.randint(0, 3, (N,), generator=g)
    return [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]


class _InOrder(SAMTrainer):
    def _get_train_sampler(self, *args, **kwargs):  # no shuffling: batches known in advance
        return torch.utils.data.SequentialSampler(self.train_dataset)


def _bert_loss(model, batch):
    out = model(**batch)
    return out.loss, {}


@pytest.mark.language
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_sam_trainer_equals_train_step(tmp_path, bf16):
    model = _tiny_bert()
    reference = copy.deepcopy(model)
    data = _examples()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=ACCUM,
        max_steps=STEPS,
        learning_rate=LR,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=0.0,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        bf16=bf16,  # Trainer's mixed precision on the CPU: bf16 autocast, no GradScaler
    )
    trainer = _InOrder(model=model, args=args, train_dataset=data, rho=RHO)
    # BERT's classification loss is a micro-batch mean that ignores num_items_in_batch, so
    # Trainer (with or without SAM) would accumulate the *sum* of the micro-batch means; this
    # switch makes it divide by the accumulation steps, i.e. the batch mean train_step takes.
    trainer.model_accepts_loss_kwargs = False
    trainer.train()
    assert isinstance(
        trainer.optimizer.optimizer
        if hasattr(trainer.optimizer, "optimizer")
        else trainer.optimizer,
        SAM,
    )

    # The same steps through samcore.train_step: AdamW with Trainer's defaults, micro-batches.
    opt = SAM(reference.parameters(), torch.optim.AdamW, rho=RHO, lr=LR, weight_decay=0.0)
    reference.train()
    per_step = MICRO * ACCUM
    for s in range(STEPS):
        chunk = data[s * per_step : (s + 1) * per_step]
        batch = {k: torch.stack([ex[k] for ex in chunk]) for k in chunk[0]}
        train_step(
            reference,
            opt,
            _bert_loss,
            batch,
            micro_batch_size=MICRO,
            autocast_dtype=torch.bfloat16 if bf16 else None,
        )
    moved = max(
        (a - b).abs().max().item()
        for a, b in zip(model.parameters(), copy.deepcopy(_tiny_bert()).parameters())
    )
    assert moved > 1e-4  # the trainer did train
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
