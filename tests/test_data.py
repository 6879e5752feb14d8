"The data layer on the embedded benchmark, bad input, the mask finder and the splits."

import hashlib, json
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.model_selection import train_test_split
from cgddi.benchmark import make_benchmark
from cgddi.data import (
    DataError,
    SPLIT_MODES,
    TONE_ORDER,
    find_masks,
    joined_ddi,
    load_ddi,
    make_split,
    read_split,
    to_mask_frame,
    write_splits,
)

COLUMNS = ["ddi_id", "file", "image_path", "mask_path", "tone", "malignant", "disease", "disease_joined", "rarity"]


def _digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_load_benchmark(benchmark_root):
    df = load_ddi(benchmark_root)
    assert set(COLUMNS) <= set(df.columns) and len(df) == 40
    assert set(df.tone) == set(TONE_ORDER) and df.malignant.dtype == bool
    masks = {p.stem for p in (benchmark_root / "masks").rglob("*.npy")}
    assert set(df.loc[df.mask_path.notna(), "file"].str[:-4]) == masks and 0 < len(masks) < 40  # most, not all
    counts = df.disease_joined.value_counts()
    for d, r in df.groupby("disease_joined").rarity.first().items():
        n = counts[d]
        assert r == ("common" if n > 10 else "rare" if n >= 3 else "very_rare")
    meta = pd.read_csv(benchmark_root / "ddi_metadata.csv")
    # DDI's layout
    assert list(meta.columns) == ["Unnamed: 0", "DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"]


def test_benchmark_deterministic(tmp_path):
    a = make_benchmark(tmp_path / "a", seed=5, n_images=20)
    b = make_benchmark(tmp_path / "b", seed=5, n_images=20)
    c = make_benchmark(tmp_path / "c", seed=6, n_images=20)
    assert _digest(a) == _digest(b) and _digest(a) != _digest(c)
    assert make_benchmark(a, seed=5, n_images=20) == a and _digest(a) == _digest(b)  # a complete set is reused
    make_benchmark(a, seed=6, n_images=20)  # other settings: regenerated in place
    assert _digest(a) == _digest(c)
    stamp = json.loads((c / "benchmark.json").read_text())
    stamp["generator"] = "older code"
    (c / "benchmark.json").write_text(json.dumps(stamp))
    (c / "000001.png").write_bytes(b"stale")
    make_benchmark(c, seed=6, n_images=20)  # made by other generator code: regenerated, never read stale
    assert _digest(a) == _digest(c)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        make_benchmark(tmp_path / "mine")  # never overwrites a folder it did not make


def test_benchmark_tones_differ(benchmark_root):
    df = load_ddi(benchmark_root)
    df = df[df.mask_path.notna()]
    skin = {t: [] for t in TONE_ORDER}
    for r in df.itertuples():
        img = np.asarray(to_mask_frame(Image.open(r.image_path).convert("RGB")), float)
        skin[r.tone].append(img[np.load(r.mask_path) == 4].mean())
    light, medium, dark = (np.mean(skin[t]) for t in TONE_ORDER)
    assert light > medium + 20 and medium > dark + 20


def test_joined_table_matches_paper():
    jd = joined_ddi().set_index("disease").disease_joined
    table4 = {
        "basal cell carcinoma": [
            "basal-cell-carcinoma",
            "basal-cell-carcinoma-superficial",
            "basal-cell-carcinoma-nodular",
        ],
        "melanoma": ["melanoma-in-situ", "melanoma-acral-lentiginous", "nodular-melanoma-(nm)", "melanoma"],
        "nevus": ["melanocytic-nevi", "dysplastic-nevus"],
        "verruca vulgaris": ["verruca-vulgaris", "wart"],
    }
    for joined, labels in table4.items():
        assert set(jd[jd == joined].index) == set(labels)
    assert len(jd) == 78 and jd.nunique() == 65


def _bomb(path):
    "A small PNG whose header claims 30000 x 30000 pixels (Pillow's bomb check reads only the header)."
    import struct, zlib

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


def _edit_meta(root, **cols):
    m = pd.read_csv(root / "ddi_metadata.csv", index_col=0)
    for c, (row, v) in cols.items():
        m[c] = m[c].astype(object)
        m.loc[row, c] = v
    m.to_csv(root / "ddi_metadata.csv")


@pytest.mark.parametrize(
    "edit, expect",
    [
        (
            lambda r: (
                pd.read_csv(r / "ddi_metadata.csv", index_col=0)
                .drop(columns="skin_tone")
                .to_csv(r / "ddi_metadata.csv")
            ),
            "missing column(s) ['skin_tone']",
        ),
        (lambda r: _edit_meta(r, skin_tone=(0, 78)), "skin_tone 78"),
        (lambda r: _edit_meta(r, malignant=(0, "maybe")), "malignant value 'maybe' is not boolean-like"),
        (lambda r: _edit_meta(r, disease=(0, "made-up-disease")), "unknown DDI disease label(s) ['made-up-disease']"),
        (lambda r: (r / "000002.png").unlink(), "000002.png: image listed in ddi_metadata.csv not found"),
        (lambda r: (r / "000002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "000002.png: image is corrupt"),
        (lambda r: (r / "ddi_metadata.csv").unlink(), "ddi_metadata.csv: not found"),
        (
            lambda r: (r / "ddi_metadata.csv").write_bytes(
                "DDI_ID,DDI_file,skin_tone,malignant,disease\n1,é.png,12,False,nevus\n".encode("latin-1")
            ),
            "ddi_metadata.csv: not UTF-8 text",
        ),
        (lambda r: (r / "ddi_metadata.csv").write_text(""), "ddi_metadata.csv: empty"),
        (lambda r: _edit_meta(r, DDI_ID=(0, "one")), "DDI_ID must be whole numbers; got ['one']"),
        (lambda r: _edit_meta(r, DDI_ID=(1, 1)), "DDI_ID listed twice: [1]"),
        (
            lambda r: (_edit_meta(r, DDI_file=(1, "000001.jpg")), Image.new("RGB", (8, 8)).save(r / "000001.jpg")),
            "share a name stem",
        ),
        (lambda r: _bomb(r / "000002.png"), "000002.png: image is larger than Pillow's decompression-bomb limit"),
    ],
)
def test_bad_metadata_and_images(bench_copy, edit, expect):
    edit(bench_copy)
    with pytest.raises(DataError) as e:
        load_ddi(bench_copy)
    assert expect in str(e.value) and str(bench_copy) in str(e.value)  # names the file


def _a_mask(root):
    return sorted((root / "masks").rglob("*.npy"))[0]


@pytest.mark.parametrize(
    "bad, expect",
    [
        (np.zeros((128, 128), np.int32), "shape (128, 128), expected (256, 256)"),
        (np.full((256, 256), 7, np.int32), "unknown values [7]"),
        (np.zeros((256, 256), np.float32), "not integer"),
    ],
)
def test_bad_masks(bench_copy, bad, expect):
    p = _a_mask(bench_copy)
    for q in (bench_copy / "masks").rglob(p.name):
        np.save(q, bad)  # every copy, so duplicates agree
    with pytest.raises(DataError) as e:
        load_ddi(bench_copy)
    assert expect in str(e.value) and p.name in str(e.value)


def test_differing_duplicate_masks(bench_copy):
    p = _a_mask(bench_copy)
    other = bench_copy / "masks" / "extra" / "deeper" / p.name
    other.parent.mkdir(parents=True)
    m = np.load(p)
    m[0, 0] = 3 if m[0, 0] != 3 else 4
    np.save(other, m)
    with pytest.raises(DataError) as e:
        find_masks(bench_copy / "masks")
    assert str(p) in str(e.value) and str(other) in str(e.value)


def test_mask_finder_nested(tmp_path):
    m = np.zeros((256, 256), np.int32)
    for folder in ["testing/test_dark", "training/5%/train", "training/10%/val", "a/b/c/d"]:
        (tmp_path / folder).mkdir(parents=True)
        np.save(tmp_path / folder / "000007.npy", m)
    np.save(tmp_path / "a" / "000009.npy", m + 4)
    found = find_masks(tmp_path)
    assert sorted(found) == ["000007", "000009"]  # identical duplicates collapse
    assert found["000007"].name == "000007.npy" and found["000009"].parent == tmp_path / "a"


def test_to_mask_frame_modes():
    a = np.zeros((240, 320, 3), np.uint8)
    a[:, :40] = (255, 0, 0)
    a[:, 40:] = (0, 0, 255)
    img = Image.fromarray(a)
    r = np.asarray(to_mask_frame(img, "resize"))
    c = np.asarray(to_mask_frame(img, "square_crop"))
    assert r.shape == c.shape == (256, 256, 3)
    assert r[:, :30, 0].min() > 200 and r[:, 34:, 0].max() < 60  # 40 px of 320 -> 32 px of 256
    assert c[..., 0].max() < 60  # the centre 240x240 square holds no red
    with pytest.raises(ValueError):
        to_mask_frame(img, "stretch")


def test_splits_reproducible_and_disjoint(benchmark_root, tmp_path):
    df = load_ddi(benchmark_root)
    paths = write_splits(df, tmp_path, seeds=[36, 37])
    assert len(paths) == 4 and all(p.exists() for p in paths)
    for mode in SPLIT_MODES:
        a, b = read_split(tmp_path, mode, 36), read_split(tmp_path, mode, 37)
        for s in (a, b):
            assert sorted(s.ddi_id) == sorted(df.ddi_id) and not s.ddi_id.duplicated().any()
        assert not a.equals(b)
        pd.testing.assert_frame_equal(a, make_split(df, 36, mode))
    f = read_split(tmp_path, "faithful", 36)
    _, test = train_test_split(df.sort_values("ddi_id").ddi_id, test_size=0.2, random_state=36)
    assert set(f.ddi_id[f.split == "test"]) == set(test) and "val" not in set(f.split)
    c = read_split(tmp_path, "clean", 36)
    assert set(c.split) == {"train", "val", "test"}
    groups = c.assign(g=c.tone + c.malignant.astype(str)).groupby("g").split.apply(set)
    assert all(s == {"train", "val", "test"} for s in groups)  # every tone x malignancy group in every part


def test_read_split_missing(tmp_path):
    with pytest.raises(DataError, match="run 00_data"):
        read_split(tmp_path, "faithful", 36)


def test_images_subfolder_and_no_masks(bench_copy):
    (bench_copy / "images").mkdir()
    for p in bench_copy.glob("*.png"):
        p.rename(bench_copy / "images" / p.name)
    masks = bench_copy / "masks"
    masks.rename(bench_copy.parent / "sddi")
    df = load_ddi(bench_copy)  # no masks folder: loads, with no mask paths
    assert df.mask_path.isna().all() and all("/images/" in p for p in df.image_path)
    df = load_ddi(bench_copy, masks=bench_copy.parent / "sddi")  # masks kept elsewhere
    assert df.mask_path.notna().any()
