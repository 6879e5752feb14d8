"The `cgddi export-dataset` command on a work dir with a healthy set."

import pandas as pd
from cgddi.run import main
from cgddi.manifest import read_manifest


def test_export_dataset_command(work_copy, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export-dataset", str(work_copy), str(out)]) == 0
    kept = read_manifest(work_copy, "healthy")
    meta = pd.read_parquet(out / "healthy" / "metadata.parquet")
    assert sorted("healthy/" + meta.file_name) == sorted(kept.image) and len(kept) > 0
    assert (
        all((out / p).exists() for p in kept.image)
        and (out / "README.md").exists()
        and (out / "croissant.json").exists()
    )
    assert not (out / "semantic").exists()  # only the types the run made
    assert main(["export-dataset", str(work_copy), str(out)]) == 2  # an existing folder is never overwritten
    assert "exists" in capsys.readouterr().err


def test_round_trip_gives_the_same_tables(tmp_path):
    """Export a benchmark run, import it into a fresh work dir with the same 00_data outputs: classification gives the
    same predictions."""
    import shutil
    from cgddi.run import standalone
    from cgddi.classify import ClassifyConfig, run_experiments, read_predictions
    from cgddi.fairness import per_seed_metrics

    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "export"
    standalone(a, upto="05_semantic")
    for part in ("benchmark", "data", "splits"):
        shutil.copytree(a / part, b / part)
    assert main(["export-dataset", str(a), str(out)]) == 0
    assert main(["import-dataset", str(out), str(b)]) == 0
    cfg = ClassifyConfig(
        resize=40,
        crop=32,
        epochs=1,
        finetune_epochs=1,
        seeds=[36],
        real_methods=["baseline"],
        synthetic_method="baseline",
        experiments=["real", "exp1", "healthy_lesion_mapped", "semantic"],
    )
    runs_a, runs_b = run_experiments(a, cfg), run_experiments(b, cfg)
    assert (runs_a.status == "done").sum() >= 6, runs_a[["protocol", "experiment", "status"]]
    pa, pb = read_predictions(a), read_predictions(b)
    pd.testing.assert_frame_equal(pa, pb)
    pd.testing.assert_frame_equal(per_seed_metrics(pa), per_seed_metrics(pb))
    cols = [c for c in runs_a.columns if c.startswith("n_")]
    # same counts dropped and let through
    pd.testing.assert_frame_equal(runs_a[cols].reset_index(drop=True), runs_b[cols].reset_index(drop=True))


def test_import_adapters_command_names_the_bad_folder(work_copy, tmp_path, capsys):
    from cgddi.data import read_data, write_splits

    write_splits(read_data(work_copy), work_copy, seeds=[36])  # 00_data's outputs, as the command expects
    bad = tmp_path / "melanoma"
    bad.mkdir()  # a released folder without its files
    assert main(["import-adapters", str(bad), "--work-dir", str(work_copy), "--sd-model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "learned_embeds.safetensors" in err


# --- hostile and broken releases: refused by name before anything is written (issues 24, 28) ---
import json, shutil
import pytest
from PIL import Image
from cgddi.data import DataError
from cgddi.publish import export_dataset, import_dataset
from cgddi.layout import IMPORTS


def _fresh(src, dst):
    "A work dir with 00_data's outputs only."
    for part in ("benchmark", "data", "splits"):
        if (src / part).exists():
            shutil.copytree(src / part, dst / part)
    return dst


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def release(work_copy, tmp_path):
    "A cgddi export of the healthy set and a fresh work dir to import it into."
    return export_dataset(work_copy, tmp_path / "export"), _fresh(work_copy, tmp_path / "fresh")


def _set_name(out, i, name):
    meta = pd.read_parquet(out / "healthy" / "metadata.parquet")
    meta.loc[i, "file_name"] = name
    meta.to_parquet(out / "healthy" / "metadata.parquet")


def _bomb(path):
    import struct, zlib

    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def _second(out):
    return out / "healthy" / pd.read_parquet(out / "healthy" / "metadata.parquet").file_name[1]


@pytest.mark.parametrize(
    "case, expect",
    [
        ("outside symlink", "is a link"),
        ("dotdot", "not a plain relative path"),
        ("absolute", "not a plain relative path"),
        ("not an image", "corrupt or not an image"),
        ("truncated", "corrupt or not an image"),
        ("bomb", "decompression-bomb limit"),
    ],
)
def test_hostile_release_is_refused_by_name_and_nothing_written(release, tmp_path, case, expect):
    out, fresh = release
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN PRIVATE KEY-----")
    victim = _second(out)
    if case == "outside symlink":
        victim.unlink()
        victim.symlink_to(secret)
    elif case == "dotdot":
        shutil.copy(victim, tmp_path / "x.png")
        _set_name(out, 1, "../../x.png")
    elif case == "absolute":  # a bare release (one metadata.csv) whose image column holds an absolute path
        meta = pd.read_parquet(out / "healthy" / "metadata.parquet")
        (out / "healthy" / "metadata.parquet").unlink()
        meta.assign(image="healthy/" + meta.file_name).drop(columns="file_name").assign(
            image=lambda d: d.image.where(d.index != 1, str(secret))
        ).to_csv(out / "metadata.csv", index=False)
    elif case == "not an image":
        victim.write_text("hello")
    elif case == "truncated":
        victim.write_bytes(victim.read_bytes()[:300])
    else:
        _bomb(victim)
    before, outside = _tree(fresh), sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises((ValueError, DataError)) as e:
        import_dataset(out, fresh)
    assert expect in str(e.value) and "row 1" in str(e.value), str(e.value)  # names the row
    # nothing written, in or out
    assert _tree(fresh) == before and sorted(p.name for p in tmp_path.iterdir()) == outside
    assert not list(fresh.glob(".import-*"))


def test_export_never_follows_a_link_out_of_the_work_dir(work_copy, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN PRIVATE KEY-----")
    image = work_copy / read_manifest(work_copy, "healthy").image.iloc[0]
    image.unlink()
    image.symlink_to(secret)
    with pytest.raises(ValueError, match=f"{image}.*is a link"):
        export_dataset(work_copy, tmp_path / "export")
    assert not (tmp_path / "export").exists() and not (tmp_path / "export.partial").exists()


def test_each_import_is_its_own_shard_and_never_shadows_a_generated_image(release, work_copy, tmp_path):
    out, fresh = release
    import_dataset(out, fresh)
    meta = pd.read_parquet(out / "healthy" / "metadata.parquet")
    other = shutil.copytree(out, tmp_path / "other")  # a second release: one image under a new name
    shutil.rmtree(other / "semantic", ignore_errors=True)
    (other / "healthy" / meta.file_name[0]).rename(other / "healthy" / "extra.png")
    meta.iloc[[0]].assign(file_name="extra.png").to_parquet(other / "healthy" / "metadata.parquet")
    import_dataset(other, fresh)
    shards = sorted(p.name for p in (fresh / "manifest" / "healthy").glob("*.csv"))
    assert len(shards) == 2 and all(s.startswith("imported-") for s in shards), shards
    assert len(read_manifest(fresh, "healthy")) == len(meta) + 1
    # the log names each import's shard
    assert sorted(i["shard"] + ".csv" for i in json.loads((fresh / IMPORTS).read_text())) == shards
    import_dataset(out, fresh)  # the same release again: the same shard, rewritten, no duplicate rows
    assert len(read_manifest(fresh, "healthy")) == len(meta) + 1
    # a release image with the name of an image this work dir generated: refused, nothing written
    before = _tree(work_copy)
    with pytest.raises(ValueError, match="already listed in .*manifest/healthy"):
        import_dataset(out, work_copy)
    assert _tree(work_copy) == before


def test_import_never_replaces_a_work_dirs_own_adapter_provenance(work_copy, tmp_path):
    """A release carrying lora.json for an adapter the work dir trained itself is refused; the local train_ids stay (the
    leakage rule reads them)."""
    local = work_copy / "lora" / "shared" / "melanoma"
    local.mkdir(parents=True)
    (local / "lora.json").write_text(json.dumps({"train_ids": [3, 9, 10, 13, 20]}))
    rel = tmp_path / "rel"
    (rel / "semantic").mkdir(parents=True)
    (rel / "lora" / "shared" / "melanoma").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 150, 120)).save(rel / "semantic" / "a.png")
    (rel / "lora" / "shared" / "melanoma" / "lora.json").write_text(json.dumps({"train_ids": []}))
    pd.DataFrame(
        [
            {
                "image": "semantic/a.png",
                "type": "semantic",
                "tone": "light",
                "base_id": 1,
                "disease": "melanoma",
                "disease_joined": "melanoma",
                "malignant": True,
                "adapter": "lora/shared/melanoma",
            }
        ]
    ).to_csv(rel / "metadata.csv", index=False)
    before = _tree(work_copy)
    with pytest.raises(
        ValueError,
        match=r"lora/shared/melanoma/lora.json.*this work dir's .*lora.json says \[3, 9, "
        r"10, 13, 20\]",
    ):
        import_dataset(rel, work_copy)
    assert _tree(work_copy) == before
    assert json.loads((local / "lora.json").read_text())["train_ids"] == [3, 9, 10, 13, 20]
