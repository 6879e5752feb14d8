"01_healthy: the diffusion backends on tiny models, the review sheet, resume and bad input."

import dataclasses, shutil
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from cgddi.data import DataError, read_data
from cgddi.healthy import HealthyConfig, inpaint_region, make_healthy
from cgddi.manifest import read_manifest, read_synthetic_meta
from cgddi.layout import REVIEW_SHEET
from cgddi.tiny import tiny_kandinsky, tiny_sd, TINY_LABEL


def _frames(work):
    ddi = read_data(work)
    return ddi[ddi.frame_mask_path.notna()].sort_values("ddi_id")


def _tiny_kandinsky(tmp_path, **settings) -> HealthyConfig:
    "The Kandinsky backend on tiny random models, 64 px, 2 steps, with `settings`."
    prior, decoder = tiny_kandinsky(tmp_path / "models")
    return HealthyConfig(
        backend="kandinsky",
        kandinsky_prior=str(prior),
        kandinsky_decoder=str(decoder),
        inpaint_size=64,
        steps=2,
        **settings,
    )


def test_kandinsky_path_on_tiny_models_writes_images(work_copy, tmp_path):
    cfg = _tiny_kandinsky(tmp_path, n_candidates=2, limit=3)
    sheet = make_healthy(work_copy, cfg)
    rows = read_manifest(work_copy, "healthy", kept_only=False)
    assert len(rows) == len(sheet) == 3 and rows.generator.str.contains(TINY_LABEL, regex=False).all()
    for r, f in zip(rows.itertuples(), _frames(work_copy).head(3).itertuples()):
        meta = read_synthetic_meta(work_copy / r.image)
        assert meta["synthetic"] is True and meta["type"] == "healthy" and TINY_LABEL in meta["generator"]
        out, orig = np.asarray(Image.open(work_copy / r.image)), np.asarray(Image.open(work_copy / f.frame_path))
        mask = np.load(work_copy / f.frame_mask_path)
        assert out.shape == orig.shape
        outside = inpaint_region(mask) == 0
        assert (out[outside] == orig[outside]).all() and (out[~outside] != orig[~outside]).any()


def test_kandinsky_in_batches_writes_every_image_and_resumes_at_another_batch_size(work_copy, tmp_path):
    cfg = _tiny_kandinsky(tmp_path, batch_size=3, limit=4)  # a batch of 3 and one of 1
    make_healthy(work_copy, cfg)
    rows = read_manifest(work_copy, "healthy", kept_only=False)
    assert len(rows) == 4
    for r, f in zip(rows.sort_values("base_id").itertuples(), _frames(work_copy).head(4).itertuples()):
        out, orig = np.asarray(Image.open(work_copy / r.image)), np.asarray(Image.open(work_copy / f.frame_path))
        outside = inpaint_region(np.load(work_copy / f.frame_mask_path)) == 0
        # each frame repainted inside its own region only (that each is the image it would be alone: 01's notebook)
        assert (out[outside] == orig[outside]).all() and (out[~outside] != orig[~outside]).any()
    # batch_size is not a setting of the images: one at a time finds them all done
    stamps = {i: (work_copy / i).stat().st_mtime_ns for i in rows.image}
    make_healthy(work_copy, dataclasses.replace(cfg, batch_size=1))
    assert {i: (work_copy / i).stat().st_mtime_ns for i in rows.image} == stamps


def test_sd_inpaint_path_on_tiny_model(work_copy, tmp_path):
    sd = tiny_sd(tmp_path / "sd", inpaint=True)
    cfg = HealthyConfig(backend="sd_inpaint", sd_inpaint_model=str(sd), inpaint_size=64, steps=2, limit=2)
    make_healthy(work_copy, cfg)
    rows = read_manifest(work_copy, "healthy", kept_only=False)
    assert len(rows) == 2 and all((work_copy / i).exists() for i in rows.image)
    # the model copied elsewhere under another name: nothing is made again, and the manifest still names the model
    # as it was when the images were made (06 hashes the manifest: a relabelled row would retrain its runs)
    shard = work_copy / "manifest" / "healthy" / "all.csv"
    before = shard.read_bytes(), {i: (work_copy / i).stat().st_mtime_ns for i in rows.image}
    moved = shutil.copytree(sd, tmp_path / "drive" / "sd-copy")
    make_healthy(work_copy, dataclasses.replace(cfg, sd_inpaint_model=str(moved)))
    assert (shard.read_bytes(), {i: (work_copy / i).stat().st_mtime_ns for i in rows.image}) == before
    assert set(read_manifest(work_copy, "healthy", kept_only=False).generator) == {f"sd [{TINY_LABEL}]"}


def test_a_finished_stage_loads_no_model_and_launches_nothing(work_copy, tmp_path, monkeypatch):
    """Every image made: a rerun, in two processes too, loads no inpainting model, launches no process and leaves the
    images, the manifest and the review sheet as they were; one image missing, the model loads for it."""
    import cgddi.healthy

    sd = tiny_sd(tmp_path / "sd", inpaint=True)
    cfg = HealthyConfig(backend="sd_inpaint", sd_inpaint_model=str(sd), inpaint_size=64, steps=2, limit=2)
    make_healthy(work_copy, cfg)
    images = read_manifest(work_copy, "healthy", kept_only=False).image
    files = [work_copy / "manifest" / "healthy" / "all.csv", work_copy / REVIEW_SHEET]
    state = lambda: ([f.read_bytes() for f in files], {i: (work_copy / i).stat().st_mtime_ns for i in images})
    before = state()

    def refuse(*args, **kwargs):
        raise AssertionError("a model loaded or a process launched for a finished stage")

    monkeypatch.setattr(cgddi.healthy, "Inpainter", refuse)
    monkeypatch.setattr(cgddi.healthy, "launch", refuse)
    make_healthy(work_copy, dataclasses.replace(cfg, num_processes=2))
    make_healthy(work_copy, cfg)
    assert state() == before
    (work_copy / images.iloc[0]).unlink()
    with pytest.raises(AssertionError, match="a model loaded"):
        make_healthy(work_copy, cfg)


def test_review_sheet_edits_survive_a_rerun_and_are_honoured(work_copy):
    sheet = pd.read_csv(work_copy / REVIEW_SHEET, dtype={"reasons": str, "note": str})
    target = sheet[sheet.keep].image.iloc[0]
    sheet.loc[sheet.image == target, ["keep", "reasons", "note"]] = [False, "2", "blotchy"]
    sheet.to_csv(work_copy / REVIEW_SHEET, index=False)
    mtimes = {p: p.stat().st_mtime_ns for p in (work_copy / "healthy" / "images").iterdir()}
    again = make_healthy(work_copy, HealthyConfig())  # same settings: resumes, nothing redone
    assert {p: p.stat().st_mtime_ns for p in (work_copy / "healthy" / "images").iterdir()} == mtimes
    row = again.set_index("image").loc[target]
    assert not row.keep and str(row.reasons) == "2" and row.note == "blotchy"
    assert target not in set(read_manifest(work_copy, "healthy").image)


def test_other_settings_redo_the_images(work_copy):
    before = read_synthetic_meta(work_copy / read_manifest(work_copy, "healthy", kept_only=False).image[0])[
        "params_hash"
    ]
    make_healthy(work_copy, HealthyConfig(opencv_radius=3, limit=2))
    rows = read_manifest(work_copy, "healthy", kept_only=False)
    assert (
        read_synthetic_meta(work_copy / rows.image[0])["params_hash"] != before
        and rows.generator[0] == "opencv-telea-r3"
    )


def test_a_changed_mask_redoes_its_image_only(work_copy):
    f = _frames(work_copy).iloc[0]
    images = {p: p.stat().st_mtime_ns for p in (work_copy / "healthy" / "images").iterdir()}
    mask = np.load(work_copy / f.frame_mask_path)
    # another mask for this image: a second lesion in a corner
    mask[:20, :20] = 1
    np.save(work_copy / f.frame_mask_path, mask)
    make_healthy(work_copy, HealthyConfig())
    changed = {p for p, t in images.items() if p.stat().st_mtime_ns != t}
    assert changed == {work_copy / "healthy" / "images" / Path(f.frame_path).name}


def test_a_relabelled_tone_redoes_its_image(work_copy):
    "Changing an image's tone in data/ddi.csv remakes its healthy twin: manifest row and PNG metadata say the new tone."
    f = _frames(work_copy).iloc[0]
    new = next(t for t in ("light", "medium", "dark") if t != f.tone)
    ddi = pd.read_csv(work_copy / "data" / "ddi.csv")
    ddi.loc[ddi.ddi_id == f.ddi_id, ["tone", "skin_tone"]] = [new, {"light": 12, "medium": 34, "dark": 56}[new]]
    ddi.to_csv(work_copy / "data" / "ddi.csv", index=False)
    make_healthy(work_copy, HealthyConfig())
    row = read_manifest(work_copy, "healthy", kept_only=False).set_index("base_id").loc[f.ddi_id]
    assert row.tone == new and read_synthetic_meta(work_copy / row.image)["tone"] == new


def test_a_mask_without_lesion_names_its_file(work_copy):
    f = _frames(work_copy).iloc[0]
    np.save(work_copy / f.frame_mask_path, np.full((256, 256), 4, np.int64))
    with pytest.raises(DataError, match=f"{f.frame_mask_path}.*nothing to inpaint"):
        make_healthy(work_copy, HealthyConfig())


def test_mask_and_image_size_mismatch(work_copy):
    f = _frames(work_copy).iloc[0]
    Image.open(work_copy / f.frame_path).resize((200, 180)).save(work_copy / f.frame_path)
    with pytest.raises(DataError, match=f"{f.frame_path}.*200x180.*256x256"):
        make_healthy(work_copy, HealthyConfig())


def test_corrupt_frame_names_the_file(work_copy):
    f = _frames(work_copy).iloc[0]
    (work_copy / f.frame_path).write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=f"{f.frame_path}.*corrupt"):
        make_healthy(work_copy, HealthyConfig())


def test_bad_backend_settings():
    with pytest.raises(ValueError, match="key 'backend' = 'dalle' must be one of"):
        HealthyConfig(backend="dalle")
    with pytest.raises(ValueError, match="n_candidates"):
        HealthyConfig(n_candidates=0)
    # keyword-only: no value lands in the wrong field
    with pytest.raises(TypeError, match="positional"):
        HealthyConfig("opencv")


def test_mini_inpainting_keeps_80_percent_on_every_tone(work_copy):
    """The default run's healthy settings (the shipped mini model): the QC keeps at least 80 % of its repaints, and more
    than of OpenCV's, on every tone."""
    from cgddi.run import project_root, load_params
    from cgddi.tiny import MINI_LABEL

    classical = pd.read_csv(work_copy / REVIEW_SHEET).groupby("tone").auto_keep.mean()  # the fixture's opencv set
    params = load_params(project_root() / "params" / "default.yaml")["stages"]["01_healthy"]
    cfg = HealthyConfig(**params)
    assert cfg.sd_inpaint_model == "mini"
    sheet = make_healthy(work_copy, cfg)
    kept = sheet.groupby("tone").auto_keep.mean()
    assert len(kept) == 3 and (kept > classical).all() and (kept >= 0.8).all(), pd.DataFrame(
        {"mini": kept, "opencv": classical}
    )
    rows = read_manifest(work_copy, "healthy", kept_only=False)
    assert rows.generator.str.contains(MINI_LABEL, regex=False).all()
    for r, f in zip(rows.head(3).itertuples(), _frames(work_copy).head(3).itertuples()):
        out, orig = np.asarray(Image.open(work_copy / r.image)), np.asarray(Image.open(work_copy / f.frame_path))
        outside = inpaint_region(np.load(work_copy / f.frame_mask_path)) == 0
        assert (out[outside] == orig[outside]).all() and (out[~outside] != orig[~outside]).any()


def test_a_full_disk_is_one_clear_error_and_the_rerun_leaves_no_orphan(work_copy, monkeypatch, capsys):
    """The disk fills after 5 images: one error naming the folder and the space left; the next run lists every image on
    disk."""
    import errno
    from cgddi.report import DiskFullError

    shutil_rows = read_manifest(work_copy, "healthy", kept_only=False)
    for p in (work_copy / "healthy" / "images").iterdir():
        p.unlink()
    (work_copy / "manifest" / "healthy" / "all.csv").unlink()
    saved, real_save = [], Image.Image.save

    def filling(self, fp, *a, **k):
        if len(saved) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(fp)
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", filling)
    with pytest.raises(
        DiskFullError,
        match=f"no space left on {work_copy / 'healthy' / 'images'}: writing .*png needed more than the .* MB free",
    ):
        make_healthy(work_copy, HealthyConfig())
    on_disk = sorted(p.name for p in (work_copy / "healthy" / "images").iterdir())
    assert len(on_disk) == 5 and not any(n.startswith(".") for n in on_disk)  # complete images only, no temp files
    monkeypatch.setattr(Image.Image, "save", real_save)
    make_healthy(work_copy, HealthyConfig())
    assert "5 healthy images written by an interrupted run" in capsys.readouterr().out
    rows = read_manifest(work_copy, "healthy", kept_only=False)
    assert sorted(Path(p).name for p in rows.image) == sorted(
        p.name for p in (work_copy / "healthy" / "images").iterdir()
    )
    assert len(rows) == len(shutil_rows)


def test_a_real_full_disk_mid_stage(work_copy, tmp_path):
    """The work dir on a small tmpfs that fills during 01: one DiskFullError; after the tmpfs grows, the rerun leaves no
    orphan."""
    import shutil, subprocess
    from cgddi.report import DiskFullError

    for p in (work_copy / "healthy" / "images").iterdir():
        p.unlink()
    (work_copy / "manifest" / "healthy" / "all.csv").unlink()
    used = sum(p.stat().st_size for p in work_copy.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    disk.mkdir()
    size = used + 1_500_000  # room for the inputs and a few healthy images, not all of them
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs needs root (the patched-save test above covers the same path)")
    try:
        work = Path(shutil.copytree(work_copy, disk / "work"))
        with pytest.raises(DiskFullError, match=f"no space left on {work}"):
            make_healthy(work, HealthyConfig())
        written = [p for p in (work / "healthy" / "images").iterdir()]
        assert written and not any(p.name.startswith(".") for p in written)  # complete images only
        subprocess.run(["mount", "-o", f"remount,size={size * 3}", str(disk)], check=True)
        make_healthy(work, HealthyConfig())
        rows = read_manifest(work, "healthy", kept_only=False)
        assert sorted(Path(p).name for p in rows.image) == sorted(
            p.name for p in (work / "healthy" / "images").iterdir()
        )
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_full_size_model_on_the_cpu_is_named_before_it_loads(tmp_path):
    """Both diffusion backends warn (CPUWarning) when their model is not a tiny or mini one and the device is the CPU,
    naming the setting and the CPU alternative; tiny models copied without their label stand in for hub models."""
    import warnings
    from cgddi.diffusion import CPUWarning
    from cgddi.healthy import Inpainter
    from cgddi.tiny import TINY_MARKER

    sd, (prior, decoder) = tiny_sd(tmp_path / "sd", inpaint=True), tiny_kandinsky(tmp_path / "k")
    for folder in (sd, decoder):
        (Path(folder) / TINY_MARKER).unlink()
    sd_cfg = HealthyConfig(backend="sd_inpaint", sd_inpaint_model=str(sd), device="cpu")
    k_cfg = HealthyConfig(backend="kandinsky", kandinsky_prior=str(prior), kandinsky_decoder=str(decoder), device="cpu")
    with pytest.warns(
        CPUWarning, match=r"sd_inpaint_model '.*' is not cgddi's tiny or mini model.*on the CPU, sd_inpaint_model: mini"
    ):
        Inpainter(sd_cfg)
    with pytest.warns(CPUWarning, match=r"kandinsky_decoder '.*' is not cgddi's tiny.*on the CPU, backend: sd_inpaint"):
        Inpainter(k_cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CPUWarning)
        Inpainter(dataclasses.replace(sd_cfg, sd_inpaint_model="mini"))
