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
