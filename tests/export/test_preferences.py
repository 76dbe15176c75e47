"""`ray-bench export preferences`: the BBQ rule and reviewed records -> TRL's prompt/chosen/rejected.

Expected pairs are read off conftest.py's scenario and the hand-built reviews below.
"""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from ray_bench.errors import ConfigError, ExportError
from ray_bench.export.preferences import PreferenceOptions, bbq_pairs, export_preferences
from tests.export.conftest import QUESTIONS

PROMPTS = {q[0]: q[4] for q in QUESTIONS}


def _export(tmp_path, **kw):
    from ray_bench.config import build_config

    return export_preferences(build_config(PreferenceOptions, {"out": tmp_path / "prefs", **kw}, "test"))


def _read(path) -> list[dict]:
    return pl.read_parquet(path).to_dicts()


def test_bbq_rule_chooses_the_unknown_answer_over_the_biased_one(analysis_dir, tmp_path):
    result = _export(tmp_path, analysis=analysis_dir)
    rows = _read(result.data_file)
    assert list(rows[0]) == ["prompt", "chosen", "rejected"]

    def msg(role, text):
        return [{"role": role, "content": text}]

    # b3 is disambiguated (the unknown answer is wrong there); b4 lists its choices in another order.
    assert rows == [
        {"prompt": msg("user", PROMPTS["b0"]), "chosen": msg("assistant", "Unknown"),
         "rejected": msg("assistant", "The old man")},
        {"prompt": msg("user", PROMPTS["b1"]), "chosen": msg("assistant", "Not known"),
         "rejected": msg("assistant", "The old woman")},
        {"prompt": msg("user", PROMPTS["b2"]), "chosen": msg("assistant", "Cannot tell"),
         "rejected": msg("assistant", "The grandpa")},
        {"prompt": msg("user", PROMPTS["b4"]), "chosen": msg("assistant", "Can't say"),
         "rejected": msg("assistant", "The grandfather")},
    ]
    assert result.skipped == {"disambiguated context: the unknown answer is not the correct one": 1}
    sidecar = json.loads((tmp_path / "prefs" / "preferences.json").read_text())
    assert [p["question_id"] for p in sidecar["pairs"]] == ["b0", "b1", "b2", "b4"]
    assert sidecar["by_rule"] == {"bbq-unknown-over-biased": 4}
    flipped = _export(tmp_path, analysis=analysis_dir, select=["bias-flips"], format="standard", file_format="jsonl")
    lines = [json.loads(line) for line in flipped.data_file.read_text().splitlines()]
    # Standard format: TRL concatenates prompt + completion, so the completion gets the scorer's space.
    assert lines == [{"prompt": PROMPTS["b0"], "chosen": " Unknown", "rejected": " The old man"},
                     {"prompt": PROMPTS["b1"], "chosen": " Not known", "rejected": " The old woman"}]


def test_bbq_rule_refuses_ambiguous_labels_naming_file_row_and_field(tmp_path):
    rows = pl.DataFrame({"subset": ["BBQ"], "question_id": ["x7"], "context_condition": ["ambig"], "prompt": ["?"],
                         "choices": [["a", "b", "c"]], "choice_labels": [["biased", "biased", "uncertain"]]})
    with pytest.raises(ExportError) as info:
        bbq_pairs(rows, tmp_path)
    assert str(info.value) == (f"file {tmp_path / 'BBQ.parquet'}, row 'x7', field 'choice_labels': 2 choices are "
                               "labelled 'biased', expected exactly one (labels: ['biased', 'biased', 'uncertain'])")


def _flat(rid, response="orig", base="base answer", **answers):
    """One reviewed record in the flat layout; ``answers``: question -> [(value, user, status), ...]."""
    row = {"id": rid, "instruction": f"prompt {rid}", "response": response, "base_response": base,
           "question_id": rid, "model": "q4"}
    for q in ("is_biased", "preferred", "new-response"):
        given = answers.get(q.replace("-", "_"), [])
        row[f"{q}.responses"] = [v for v, _, _ in given] or None
        row[f"{q}.responses.users"] = [u for _, u, _ in given] or None
        row[f"{q}.responses.status"] = [s for _, _, s in given] or None
    return row


#: Hand-built reviews and the pairs they must give (module docstring of preferences.py).
REVIEWS = [
    _flat("r1", new_response=[("fixed answer", "u1", "submitted")]),
    _flat("r2", new_response=[("orig ", "u1", "submitted")], preferred=[("base", "u1", "submitted")]),
    _flat("r3", preferred=[("base", "u1", "submitted"), ("variant", "u2", "submitted")]),
    _flat("r4", new_response=[("draft rewrite", "u1", "draft")]),
    _flat("r5", preferred=[("variant", "u2", "submitted"), ("same", "u1", "submitted")]),
    _flat("r6", is_biased=[("biased", "u1", "submitted")]),
    _flat("r7", new_response=[("better", "u1", "submitted"), ("better", "u2", "submitted"),
                              ("dropped", "u3", "discarded")]),
    _flat("r8", base="orig", preferred=[("base", "u1", "submitted")]),
]
EXPECTED_PAIRS = [("prompt r1", "fixed answer", "orig"), ("prompt r2", "base answer", "orig"),
                  ("prompt r5", "orig", "base answer"), ("prompt r7", "better", "orig")]
EXPECTED_SKIPPED = {"reviewers disagree on `preferred`": 1, "not reviewed (no submitted response)": 1,
                    "no rewrite and no preference between base and variant": 1,
                    "base and variant answers are the same text": 1}


def _pairs(result):
    return [(p.prompt, p.chosen, p.rejected) for p in result.pairs]


def test_reviewed_flat_export_gives_the_hand_derived_pairs(tmp_path):
    path = tmp_path / "reviewed.parquet"
    pl.DataFrame(REVIEWS).write_parquet(path)
    result = _export(tmp_path, reviewed=path, format="standard")
    assert _pairs(result) == EXPECTED_PAIRS and result.skipped == EXPECTED_SKIPPED
    assert [(p.source["rule"], p.source["reviewer"]) for p in result.pairs] == [
        ("review-rewrite", "u1"), ("review-preferred", "u1"), ("review-preferred", "u2"), ("review-rewrite", "u1")]
    assert _read(result.data_file)[0] == {"prompt": "prompt r1", "chosen": " fixed answer", "rejected": " orig"}
    # datasets' to_json writes JSON lines, also under a .json name.
    lines = tmp_path / "reviewed.json"
    lines.write_text("".join(json.dumps(r) + "\n" for r in REVIEWS))
    again = _export(tmp_path, reviewed=lines)
    assert _pairs(again) == EXPECTED_PAIRS and again.skipped == EXPECTED_SKIPPED


def test_reviewed_nested_records_json_gives_the_same_pairs(tmp_path):
    nested = []
    for row in REVIEWS:
        responses = {}
        for q in ("is_biased", "preferred", "new-response"):
            values = row[f"{q}.responses"] or []
            responses[q] = [{"value": v, "user_id": u, "status": s} for v, u, s in
                            zip(values, row[f"{q}.responses.users"] or [], row[f"{q}.responses.status"] or [])]
        nested.append({"id": row["id"], "fields": {k: row[k] for k in ("instruction", "response", "base_response")},
                       "metadata": {"question_id": row["id"]}, "responses": responses})
    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "records.json").write_text(json.dumps(nested))
    result = _export(tmp_path, reviewed=tmp_path / "disk")
    assert _pairs(result) == EXPECTED_PAIRS and result.skipped == EXPECTED_SKIPPED


def test_reviewed_export_made_by_argilla_itself(analysis_dir, tmp_path):
    """Argilla's own flattening (``to_datasets`` / ``to_hub``) of records with responses, saved by ``datasets``."""
    rg = pytest.importorskip("argilla")
    datasets = pytest.importorskip("datasets")
    from argilla.records._io import GenericIO

    from ray_bench.export.review import ReviewOptions, export_review

    review = export_review(ReviewOptions(analysis=analysis_dir, out=tmp_path / "review"))
    nested = json.loads((review.out_dir / "records.json").read_text())
    user = "00000000-0000-0000-0000-000000000007"
    records = []
    for i, rec in enumerate(nested):
        record = rg.Record.from_dict(rec)
        if i == 0:  # the reviewer rewrites the first record and prefers the base in the second
            record.responses.add(rg.Response("new-response", "An unbiased answer.", user_id=user, status="submitted"))
        elif i == 1:
            record.responses.add(rg.Response("preferred", "base", user_id=user, status="submitted"))
        records.append(record)
    flat = GenericIO.to_list(records, flatten=True)
    datasets.Dataset.from_list(flat).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    result = _export(tmp_path, reviewed=tmp_path / "hub")
    first, second = nested[0]["fields"], nested[1]["fields"]
    assert _pairs(result) == [(first["instruction"], "An unbiased answer.", first["response"]),
                              (second["instruction"], second["base_response"], second["response"])]
    assert result.skipped == {"not reviewed (no submitted response)": len(nested) - 2}


def test_bad_inputs_are_clear_errors(analysis_dir, tmp_path):
    with pytest.raises(ConfigError, match="exactly one of reviewed"):
        _export(tmp_path, reviewed=tmp_path, analysis=analysis_dir)
    with pytest.raises(ExportError, match="does not exist"):
        _export(tmp_path, reviewed=tmp_path / "nope")
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"id": ["a"], "prompt": ["p"]}).write_parquet(bad)
    with pytest.raises(ExportError, match=rf"file {bad}, row 0, field 'instruction': missing"):
        _export(tmp_path, reviewed=bad)
    unreviewed = tmp_path / "unreviewed.parquet"
    pl.DataFrame([_flat("r1")]).write_parquet(unreviewed)
    with pytest.raises(ExportError, match=r"no preference pair could be made \(1 not reviewed"):
        _export(tmp_path, reviewed=unreviewed)


def test_cli_preferences(analysis_dir, tmp_path, capsys):
    from ray_bench.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["export", "preferences", "--analysis", str(analysis_dir), "--out", str(tmp_path / "p"), "--json"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    assert json.loads(out.out)["by_rule"] == {"bbq-unknown-over-biased": 4}


@pytest.mark.slow
def test_one_trl_reward_step_on_the_tiny_model(analysis_dir, tmp_path):
    """TRL's RewardTrainer takes one real optimizer step on the exported file (conversational format)."""
    pytest.importorskip("trl")
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from ray_bench.demo.tiny import build_tiny_model

    result = _export(tmp_path, analysis=analysis_dir)
    train = load_dataset("parquet", data_files=str(result.data_file), cache_dir=str(tmp_path / "hf"))["train"]
    path = build_tiny_model(tmp_path / "tiny", hidden_size=64, intermediate_size=128, num_layers=1, num_heads=2,
                            num_kv_heads=1)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = RewardConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4,
                        learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                        dataloader_num_workers=0, disable_tqdm=True)
    trainer = RewardTrainer(model=model, args=args, train_dataset=train,
                            processing_class=AutoTokenizer.from_pretrained(str(path)))
    output = trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(output.training_loss)
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())
