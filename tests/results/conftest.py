"""A small run directory written the way the runner writes one (shards + manifest), no Ray."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest


def _probs(model: str, qid: str, k: int, sharpness: float) -> list[float]:
    seed = int(hashlib.blake2b(f"{model}|{qid}".encode(), digest_size=8).hexdigest(), 16)
    logits = np.random.default_rng(seed).normal(size=k) * sharpness
    p = np.exp(logits - logits.max())
    return (p / p.sum()).tolist()


def write_run(root: Path, models: dict[str, dict | None], *, sharpness: float = 2.0) -> tuple[Path, Path]:
    """Prepare the bundled sample into ``root/data`` and write results of ``models`` (name -> card)
    into ``root/runs``. Variants' probabilities are their base's, mixed with their own noise."""
    import pyarrow as pa

    from ray_bench.datasets import prepare, read_questions
    from ray_bench.results import write_shard
    from ray_bench.schema import result_schema

    data, runs = root / "data", root / "runs"
    report = prepare("sample", data, log=lambda *_: None)
    shards = {}
    for name, card in models.items():
        for d in report.prepared:
            questions = read_questions(data, d.name).to_pylist()
            rows = []
            for q in questions:
                row = {"question_id": q["question_id"], "model": name, "dataset": q["dataset"], "subset": q["subset"],
                       "axis": q["axis"], "kind": q["kind"]}
                if q["kind"] == "closed":
                    base = card["base_model"]["name"] if card else name
                    p = np.array(_probs(base, q["question_id"], len(q["choices"]), sharpness))
                    if card:
                        p = 0.7 * p + 0.3 * np.array(_probs(name, q["question_id"], len(p), sharpness))
                    row.update(choice_probs=p.tolist(), prediction=int(np.argmax(p)),
                               choice_logprob_sums=np.log(p).tolist(), choice_num_tokens=[1] * len(p))
                else:
                    row.update(response=f"an answer by {name} to {q['question_id']}")
                rows.append(row)
            key = f"{name}/{d.name}/shard-00000"
            write_shard(runs / f"{key}.parquet", pa.Table.from_pylist(rows, schema=result_schema()), "fp")
            shards[key] = {"status": "done", "questions": len(rows)}
    manifest = {
        "manifest_version": 1,
        "runs": [{"config": {"models": [{"name": n, "path": f"/models/{n}"} for n in models],
                             "data_dir": str(data), "engine": {"name": "hf", "dtype": "float32"}},
                  "provenance": {"seed": 0}}],
        "models": {n: {"path": f"/models/{n}", "quantization_card": c} for n, c in models.items()},
        "shards": shards,
    }
    (runs / "manifest.json").write_text(json.dumps(manifest))
    return runs, data


def card(base: str, method: str = "rtn", scheme: str = "w4a16") -> dict:
    """A quantization card naming ``base``."""
    return {"base_model": {"name": base, "path": f"/models/{base}"}, "method": method, "scheme": scheme}


@pytest.fixture
def small_run(tmp_path):
    return write_run(tmp_path, {"base": None, "base-rtn-w4a16": card("base"), "base-rtn-w8a16": card("base", scheme="w8a16")})
