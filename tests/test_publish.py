"The `cgddi export-dataset` command on a work dir with a healthy set."
import pandas as pd
from cgddi.run import main
from cgddi.manifest import read_manifest

def test_export_dataset_command(work_copy, tmp_path, capsys):
    out = tmp_path/"export"
    assert main(["export-dataset", str(work_copy), str(out)]) == 0
    kept = read_manifest(work_copy, "healthy")
    meta = pd.read_parquet(out/"healthy"/"metadata.parquet")
    assert sorted("healthy/" + meta.file_name) == sorted(kept.image) and len(kept) > 0
    assert all((out/p).exists() for p in kept.image) and (out/"README.md").exists() and (out/"croissant.json").exists()
    assert not (out/"semantic").exists()  # only the types the run made
    assert main(["export-dataset", str(work_copy), str(out)]) == 2  # an existing folder is never overwritten
    assert "exists" in capsys.readouterr().err

def test_round_trip_gives_the_same_tables(tmp_path):
    "Export a benchmark run, import it into a fresh work dir with the same 00_data outputs: classification gives the same predictions."
    import shutil, dataclasses
    from cgddi.run import standalone
    from cgddi.classify import ClassifyConfig, run_experiments, read_predictions
    from cgddi.fairness import per_seed_metrics
    a, b, out = tmp_path/"a", tmp_path/"b", tmp_path/"export"
    standalone(a, upto="05_semantic")
    for part in ("benchmark", "data", "splits"): shutil.copytree(a/part, b/part)
    assert main(["export-dataset", str(a), str(out)]) == 0
    assert main(["import-dataset", str(out), str(b)]) == 0
    cfg = ClassifyConfig(resize=40, crop=32, epochs=1, finetune_epochs=1, seeds=[36], real_methods=["baseline"], synthetic_method="baseline",
                         experiments=["real", "exp1", "healthy_lesion_mapped", "semantic"])
    runs_a, runs_b = run_experiments(a, cfg), run_experiments(b, cfg)
    assert (runs_a.status == "done").sum() >= 6, runs_a[["protocol", "experiment", "status"]]
    pa, pb = read_predictions(a), read_predictions(b)
    pd.testing.assert_frame_equal(pa, pb)
    pd.testing.assert_frame_equal(per_seed_metrics(pa), per_seed_metrics(pb))
    cols = [c for c in runs_a.columns if c.startswith("n_")]
    pd.testing.assert_frame_equal(runs_a[cols].reset_index(drop=True), runs_b[cols].reset_index(drop=True))  # same counts dropped and let through

def test_import_adapters_command_names_the_bad_folder(work_copy, tmp_path, capsys):
    from cgddi.data import read_data, write_splits
    write_splits(read_data(work_copy), work_copy, seeds=[36])  # 00_data's outputs, as the command expects
    bad = tmp_path/"melanoma"; bad.mkdir()  # a released folder without its files
    assert main(["import-adapters", str(bad), "--work-dir", str(work_copy), "--sd-model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "learned_embeds.safetensors" in err
