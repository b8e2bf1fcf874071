"""rankfold compress / rankfold inspect on a tiny transformers model folder."""

from __future__ import annotations

import json

from _nn_models import tiny_bert

from rankfold.cli.main import main


def _model_dir(tmp_path):
    from transformers import BertTokenizerFast

    model, _ = tiny_bert()
    d = tmp_path / "model"
    model.save_pretrained(d)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(d)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(" ".join(f"w{(i * 7 + j) % 95}" for j in range(12))
                               for i in range(20)))
    return d, texts


def test_compress_then_inspect(tmp_path, capsys) -> None:
    d, texts = _model_dir(tmp_path)
    out = tmp_path / "out"
    rc = main(["compress", str(d), "--ratio", "0.4", "--method", "whiten", "--calibration",
               str(texts), "--out", str(out), "--format", "json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert 0.35 < rep["param_ratio_removed"] < 0.45
    assert (out / "rankfold_compression.json").exists() and (out / "tokenizer.json").exists()
    rc = main(["inspect", str(out), "--format", "json", "--plot", str(tmp_path / "s.png")])
    assert rc == 0
    recs = json.loads(capsys.readouterr().out)
    assert any(r["rank"] is not None and r["method"] == "whiten" for r in recs)
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_cli_usage_errors(tmp_path, capsys) -> None:
    d, texts = _model_dir(tmp_path)
    assert main(["compress", str(tmp_path / "none"), "--ratio", "0.4", "--out", "x"]) == 2
    assert "config.json" in capsys.readouterr().err
    assert main(["compress", str(d), "--ratio", "1.5", "--method", "svd", "--out",
                 str(tmp_path / "o")]) == 2
    assert "'ratio' parameter" in capsys.readouterr().err
