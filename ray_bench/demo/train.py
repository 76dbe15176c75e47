"""Briefly train a tiny causal LM so that its output distributions are peaked.

A random-weight model predicts near-uniform tokens, so the differences between it and
a quantized copy are dominated by near-ties (pitfalls.md). A few hundred AdamW steps on
the generated corpus of :mod:`ray_bench.demo.tiny` make base-vs-quantized comparisons
meaningful, and take seconds on CPU for the default 128-wide model.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray_bench.demo.tiny import build_tiny_model, default_corpus


def train_tiny_model(
    out_dir: str | Path,
    *,
    steps: int = 150,
    batch_size: int = 16,
    seq_len: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    arch: str = "llama",
    corpus: list[str] | None = None,
    **model_kwargs: int,
) -> Path:
    """Build a tiny model with :func:`build_tiny_model`, train it and save it in fp32.

    Args:
        out_dir: Where the trained model and its tokenizer are saved.
        steps: AdamW steps (each on ``batch_size`` windows of ``seq_len`` tokens).
        batch_size: Windows per step.
        seq_len: Tokens per window.
        lr: Peak learning rate (linear decay to 10% of it).
        seed: Seeds the weights, the corpus and the window sampling.
        arch: ``llama`` or ``qwen2``.
        corpus: Training sentences; :func:`default_corpus` when ``None``.
        **model_kwargs: Passed to :func:`build_tiny_model` (``hidden_size``, ...).

    Returns:
        ``out_dir``, loadable with ``AutoModelForCausalLM``; ``ray_bench_tiny.json``
        records the training settings and the final loss.

    Raises:
        ValueError: ``steps``, ``batch_size`` or ``seq_len`` is not positive, or the corpus
            is shorter than one window.
    """
    for label, value in (("steps", steps), ("batch_size", batch_size), ("seq_len", seq_len)):
        if value <= 0:
            raise ValueError(f"{label} must be positive, got {value}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    texts = corpus if corpus is not None else default_corpus(seed=seed)
    build_tiny_model(out, arch=arch, seed=seed, **model_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    stream = _token_stream(tokenizer, texts)
    if stream.numel() <= seq_len + 1:
        raise ValueError(f"corpus has {stream.numel()} tokens, fewer than one window of {seq_len + 1}")
    losses = _train(model, stream, steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, seed=seed)
    model.eval()
    model.save_pretrained(out)
    meta = json.loads((out / "ray_bench_tiny.json").read_text())
    meta["training"] = {
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lr": lr,
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
    }
    (out / "ray_bench_tiny.json").write_text(json.dumps(meta))
    return out


def _token_stream(tokenizer, texts: list[str]):
    import torch

    ids: list[int] = []
    for text in texts:
        # add_special_tokens keeps BOS at sentence starts, as the scorer will see it.
        ids.extend(tokenizer(text)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def _train(model, stream, *, steps: int, batch_size: int, seq_len: int, lr: float, seed: int) -> list[float]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - 0.9 * s / max(1, steps))
    model.train()
    losses = []
    for _ in range(steps):
        offsets = torch.randint(0, stream.numel() - seq_len - 1, (batch_size,), generator=gen)
        batch = torch.stack([stream[o : o + seq_len] for o in offsets.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses
