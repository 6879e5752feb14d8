"06_classify and 07_fairness on a small work_dir: predictions on disk, resume, bad input."

import json, os, shutil
import pandas as pd
import pytest
import dataclasses
import yaml
from cgddi.leakage import audit_leakage
from cgddi.run import project_root
from cgddi.classify import (
    ClassifyConfig,
    run_experiments,
    run_one,
    prediction_path,
    model_path,
    read_predictions,
    read_runs,
    PREDICTION_COLUMNS,
)
from cgddi.data import DataError, read_data, read_split, split_path, write_splits
from cgddi.fairness import per_seed_metrics, classification_metrics

CFG = ClassifyConfig(resize=40, crop=32, epochs=1, finetune_epochs=1, batch_size=16)


@pytest.fixture
def split_work(work_copy):
    "A work_dir with data, splits (seed 36) and a healthy set."
    write_splits(read_data(work_copy), work_copy, seeds=[36])
    return work_copy


def _healthy_base_in_test(work, protocol, seed):
    """A reviewer keeps every healthy image, and splits are swapped so that one's base is a test image (the leak the
    rule must catch)."""
    review = pd.read_csv(work / "healthy" / "review.csv")
    # the review sheet's override (01_healthy)
    review.assign(keep=True).to_csv(work / "healthy" / "review.csv", index=False)
    healthy = pd.read_csv(work / "manifest" / "healthy" / "all.csv")
    kept = review.image
    base = int(healthy[healthy.image.isin(kept)].base_id.iloc[0])
    p = split_path(work, protocol, seed)
    split = pd.read_csv(p)
    if base not in set(split.ddi_id[split.split == "test"]):
        other = split.index[split.split == "test"][0]
        mine = split.index[split.ddi_id == base][0]
        split.loc[[mine, other], "split"] = [split.split[other], split.split[mine]]
        split.to_csv(p, index=False)


def test_one_epoch_run_writes_predictions_and_resumes(split_work):
    cfg = dataclasses.replace(
        CFG,
        protocols=["faithful"],
        seeds=[36],
        experiments=["real", "exp1"],
        real_methods=["baseline", "fairdisco"],
        synthetic_method="baseline",
    )
    _healthy_base_in_test(split_work, "faithful", 36)
    runs = run_experiments(split_work, cfg)
    assert set(runs.status) == {"done"} and len(runs) == 3
    test_ids = read_split(split_work, "faithful", 36).query("split == 'test'").ddi_id
    for m in ["baseline", "fairdisco"]:
        pred = pd.read_csv(prediction_path(split_work, "faithful", "real", m, 36))
        assert list(pred.columns) == PREDICTION_COLUMNS and sorted(pred.ddi_id) == sorted(test_ids)
        assert pred.y_prob.between(0, 1).all() and ((pred.y_prob >= 0.5).astype(int) == pred.y_pred).all()
    exp1 = runs.set_index("experiment").loc["exp1"]
    # healthy canvases of test images are left out: one per test image that has a healthy version
    healthy = pd.read_csv(split_work / "manifest" / "healthy" / "all.csv")
    kept = pd.read_csv(split_work / "healthy" / "review.csv").query("keep == True").image
    expected_drop = healthy[healthy.image.isin(kept) & healthy.base_id.isin(test_ids)].shape[0]
    assert exp1.n_dropped_leakage == expected_drop > 0
    assert exp1.n_train_synthetic == len(kept) - expected_drop
    # resume: delete one run; only that one is trained again
    gone = prediction_path(split_work, "faithful", "real", "fairdisco", 36)
    kept_file = prediction_path(split_work, "faithful", "real", "baseline", 36)
    before = os.stat(kept_file).st_mtime_ns
    gone.unlink()
    gone.with_suffix(".json").unlink()
    run_experiments(split_work, cfg)
    assert gone.exists() and os.stat(kept_file).st_mtime_ns == before
    facts = lambda: json.loads(kept_file.with_suffix(".json").read_text())
    hash_before, seconds_before = facts()["params_hash"], facts()["seconds"]
    run_experiments(split_work, dataclasses.replace(cfg, epochs=2))  # other settings: every run is redone
    # (its predictions may come out the same bytes)
    assert facts()["params_hash"] != hash_before and facts()["seconds"] != seconds_before
    assert len(per_seed_metrics(read_predictions(split_work))) == 3


def test_the_report_reads_the_runs_of_the_settings_06_last_finished(split_work):
    """Runs of earlier settings stay on disk, but `read_runs` and `read_predictions` (what 07 reports) give only those
    of the settings 06 last finished; `read_runs(every=True)` gives all."""
    key = lambda runs: sorted(runs[["protocol", "experiment", "method"]].itertuples(index=False, name=None))
    first = dataclasses.replace(CFG, protocols=["clean"], seeds=[36], experiments=["real"], real_methods=["baseline"])
    assert key(run_experiments(split_work, first)) == [("clean", "real", "baseline")]
    later = dataclasses.replace(
        first,
        protocols=["faithful"],
        experiments=["real", "exp1"],
        real_methods=["fairdisco"],
        synthetic_method="baseline",
    )
    now = [("faithful", "exp1", "baseline"), ("faithful", "real", "fairdisco")]
    assert key(run_experiments(split_work, later)) == key(read_runs(split_work)) == now
    assert key(read_runs(split_work, every=True)) == sorted([("clean", "real", "baseline"), *now])
    assert sorted(set(zip(read_predictions(split_work).experiment, read_predictions(split_work).method))) == [
        (e, m) for _, e, m in now
    ]


def test_images_moved_elsewhere_keep_the_finished_runs(split_work, benchmark_root, tmp_path):
    """The DDI folder (or a work dir holding the benchmark) moved to another disk or mount and 00 rerun: 06's finished
    runs stay done, nothing is trained again; a changed label still makes a run new."""
    from cgddi.data import load_ddi, write_data
    from cgddi.classify import run_hash

    cfg = dataclasses.replace(CFG, protocols=["clean"], seeds=[36], experiments=["real"], real_methods=["baseline"])
    run_experiments(split_work, cfg)
    snap = lambda: {p: p.stat().st_mtime_ns for p in (split_work / "classify").rglob("*") if p.is_file()}
    before, run = snap(), ("clean", 36, "real", "baseline")
    hash_before = run_hash(split_work, cfg, run)
    moved = shutil.copytree(benchmark_root, tmp_path / "elsewhere" / "ddi")
    write_data(load_ddi(moved), split_work)  # what 00 does with ddi_root at the new place
    assert read_data(split_work).image_path.str.startswith(str(moved)).all()
    run_experiments(split_work, cfg)
    assert snap() == before
    table = read_data(split_work)
    table.loc[0, "malignant"] = not table.malignant[0]
    table.to_csv(split_work / "data" / "ddi.csv", index=False)
    assert run_hash(split_work, cfg, run) != hash_before


def test_missing_synthetic_type_is_skipped_with_reason(split_work):
    f = run_one(split_work, "faithful", 36, "semantic", "baseline", CFG)
    assert f["status"] == "skipped" and "semantic" in f["reason"]
    assert not prediction_path(split_work, "faithful", "semantic", "baseline", 36).exists()
    assert (
        json.loads(
            prediction_path(split_work, "faithful", "semantic", "baseline", 36).with_suffix(".json").read_text()
        )["status"]
        == "skipped"
    )


def test_exp2_needs_exp1(split_work):
    with pytest.raises(FileNotFoundError, match="run exp1 first"):
        run_one(split_work, "faithful", 36, "exp2", "baseline", CFG)


def test_a_run_skipped_under_new_settings_leaves_no_earlier_outputs(split_work):
    """exp1 trained on all tones, then on a tone with too few synthetic images: its old predictions and model go, exp2
    is skipped with it."""
    cfg = dataclasses.replace(
        CFG, protocols=["faithful"], seeds=[36], experiments=["exp1", "exp2"], synthetic_method="baseline"
    )
    assert set(run_experiments(split_work, cfg).status) == {"done"}
    files = [
        prediction_path(split_work, "faithful", "exp1", "baseline", 36),
        model_path(split_work, "faithful", "exp1", "baseline", 36),
    ]
    assert all(f.exists() for f in files)
    # keep one healthy image: under train_tones its tone's only one
    review = pd.read_csv(split_work / "healthy" / "review.csv")
    review.assign(keep=review.index == 0).to_csv(split_work / "healthy" / "review.csv", index=False)
    tone = read_data(split_work).set_index("ddi_id").tone[int(review.ddi_id[0])]
    runs = run_experiments(split_work, dataclasses.replace(cfg, train_tones=[tone])).set_index("experiment")
    assert (
        runs.status.to_dict() == {"exp1": "skipped", "exp2": "skipped"}
        and "exp1, which was skipped" in runs.reason["exp2"]
    )
    assert not any(f.exists() for f in files)
    with pytest.raises(DataError, match="no classification run finished"):
        read_predictions(split_work)


def test_empty_test_set_is_an_error(split_work):
    p = split_path(split_work, "faithful", 36)
    s = pd.read_csv(p)
    s["split"] = "train"
    s.to_csv(p, index=False)
    with pytest.raises(DataError, match="empty test set"):
        run_one(split_work, "faithful", 36, "real", "baseline", CFG)


def test_bad_predictions_name_the_file(tmp_path):
    p = prediction_path(tmp_path, "faithful", "real", "baseline", 36)
    p.parent.mkdir(parents=True)
    pd.DataFrame(
        {
            "ddi_id": [1, 2],
            "y_true": [1, 0],
            "y_prob": [0.9, 0.2],
            "y_pred": [1, 0],
            "tone": ["light", "olive"],
            "rarity": ["common", "rare"],
        }
    ).to_csv(p, index=False)
    p.with_suffix(".json").write_text(
        json.dumps(
            {
                "protocol": "faithful",
                "experiment": "real",
                "method": "baseline",
                "seed": 36,
                "status": "done",
                "pretrained": False,
            }
        )
    )
    with pytest.raises(ValueError, match="faithful/real/baseline/S36: unknown skin tone"):
        per_seed_metrics(read_predictions(tmp_path))
    pd.DataFrame({"ddi_id": [1], "y_true": [1]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="S36.csv: missing column"):
        read_predictions(tmp_path)
    with pytest.raises(DataError, match="run 06_classify first"):
        read_runs(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="empty test set"):
        classification_metrics(pd.DataFrame(columns=["y_true", "y_pred", "y_prob", "tone"]))


def test_unknown_experiment_or_method():
    with pytest.raises(ValueError, match=r"key 'experiments' = \['exp3'\] must be one of \['real', 'exp1'"):
        dataclasses.replace(CFG, seeds=[36], experiments=["exp3"])
    with pytest.raises(ValueError, match=r"key 'real_methods' = \['svm'\] must be one of"):
        dataclasses.replace(CFG, seeds=[36], experiments=["real"], real_methods=["svm"])
    with pytest.raises(ValueError, match=r"key 'external_test' = 'f18k' must be one of \['f17k'\] \(did you mean"):
        dataclasses.replace(CFG, external_test="f18k")
    with pytest.raises(ValueError, match=r"key 'train_tones' = \[\] is empty: give one or more, each one of \['light'"):
        dataclasses.replace(CFG, train_tones=[])
    with pytest.raises(ValueError, match=r"key 'seeds' = \[\] is empty: give one or more, each >= 0, or null"):
        dataclasses.replace(CFG, seeds=[])


def _benchmark_cfg(**changes) -> ClassifyConfig:
    "The 06_classify settings of params/default.yaml (the embedded benchmark's), with `changes`."
    stage = yaml.safe_load((project_root() / "params" / "default.yaml").read_text())["stages"]["06_classify"]
    fields = {f.name for f in dataclasses.fields(ClassifyConfig)}
    return dataclasses.replace(ClassifyConfig(**{k: v for k, v in stage.items() if k in fields}), **changes)


def _accuracy(work, protocol, seed):
    pred = pd.read_csv(prediction_path(work, protocol, "real", "baseline", seed))
    return float((pred.y_true == pred.y_pred).mean())


def test_planted_leak_inflates_the_score_and_the_audit_names_it(split_work):
    """Train (and select) on the test split's own images on purpose: the score jumps, and the leakage audit names
    exactly those rows."""
    cfg = _benchmark_cfg(protocols=["clean"], seeds=[36], experiments=["real"], real_methods=["baseline"])
    run_one(split_work, "clean", 36, "real", "baseline", cfg)
    honest = _accuracy(split_work, "clean", 36)
    assert audit_leakage(split_work).empty
    p = split_path(split_work, "clean", 36)
    split = pd.read_csv(p)
    test = split[split.split == "test"]
    leak = test.assign(split="train")  # the leak: every test image also trained on, and chosen by (the validation part)
    pd.concat([split, leak, test.assign(split="val")]).to_csv(p, index=False)
    facts = run_one(split_work, "clean", 36, "real", "baseline", cfg)
    leaky = _accuracy(split_work, "clean", 36)
    audit = audit_leakage(split_work)
    assert sorted(set(audit.ddi_id)) == sorted(test.ddi_id) and set(audit.leak) == {"real"}, audit
    assert audit_leakage(split_work, runs={("clean", "real", "baseline", 37)}).empty  # only the runs asked for
    assert facts["n_train_real"] == (split.split == "train").sum() + len(leak)
    print(
        f"planted leak: clean S36 baseline accuracy {honest:.3f} honest -> {leaky:.3f} trained and selected on its "
        "test images"
    )
    assert leaky >= honest + 0.2, (honest, leaky)


def test_a_large_classifier_on_the_cpu_is_named_before_it_trains(split_work):
    """run_experiments warns (CPUWarning) before a classifier of the paper's size trains on the CPU: made an error here,
    it stops the stage before any run is written; the small settings of this file train without it."""
    import warnings
    from cgddi.report import CPUWarning

    small = dataclasses.replace(
        CFG, protocols=["faithful"], seeds=[36], experiments=["real"], real_methods=["baseline"], device="cpu"
    )
    large = dataclasses.replace(small, crop=160, resize=176)  # ResNet-18 at 160 px
    with warnings.catch_warnings():
        warnings.simplefilter("error", CPUWarning)
        with pytest.raises(CPUWarning, match=r"baseline \(resnet18.tv_in1k, 11.2 M parameters\).* at 160 px"):
            run_experiments(split_work, large)
        assert not (split_work / "classify").exists() or not list((split_work / "classify").rglob("S36.csv"))
        assert set(run_experiments(split_work, small).status) == {"done"}  # no warning: the small ones train
