"Textual inversion, LoRA and semantic sampling on tiny models: sharding over processes, resume after a kill, bad input."

import dataclasses, json, shutil, signal, subprocess, sys
from pathlib import Path
import numpy as np
import torch
import pandas as pd
import pytest
from PIL import Image
from conftest import TINY_LORA, TINY_TI
from cgddi.data import DataError, read_data
from cgddi.manifest import ManifestError, read_manifest, manifest_dir, set_test_ids
from cgddi.leakage import audit_leakage
from cgddi.textual_inversion import TIConfig, ti_training_set, train_textual_inversion
from cgddi.lora import LoRAConfig, lora_rank, train_loras
from cgddi.semantic import SemanticConfig, sample_semantic, semantic_plan
from cgddi.shard import launch

SAMPLER = SemanticConfig(repeats=1, steps=4, resolution=32, out_size=64, batch_size=3, chunk_size=5, device="cpu")
# 06 on the semantic images alone, tiny and fast: which generator set each run takes
SEMANTIC_RUNS = dict(
    experiments=["semantic"], synthetic_method="baseline", resize=40, crop=32, epochs=1, min_train_samples=0
)


def _copy(src, dst):
    return Path(shutil.copytree(src, dst))


def _plan(work, cfg):
    return semantic_plan(work, cfg)[0]


def test_two_processes_cover_the_plan_exactly_once(lora_work, tmp_path, monkeypatch):
    work = _copy(lora_work, tmp_path / "two")
    # one JSON line per process
    reports = launch("cgddi.semantic", work, dataclasses.replace(SAMPLER, num_processes=2), timeout=600)
    assert [r["process"] for r in reports] == [0, 1]
    plan = _plan(work, SAMPLER)
    assert sum(r["mine"] for r in reports) == len(plan) and all(r["mine"] > 0 for r in reports)
    manifest = read_manifest(work, "semantic")
    assert sorted(manifest.image) == sorted(plan.image)  # every planned image, once
    assert all((work / p).exists() for p in plan.image)
    assert manifest.trained.all() and manifest.n_train_samples.notna().all()
    # the images do not depend on how the plan was split: one process makes the same ones
    one = _copy(lora_work, tmp_path / "one")
    sample_semantic(one, SAMPLER, progress=False)
    for p in plan.image[:: max(1, len(plan) // 10)]:
        a, b = (np.asarray(Image.open(w / p), np.int16) for w in (work, one))
        assert np.abs(a - b).max() <= 2, p
    # every chunk done: a rerun in two processes launches none and samples nothing
    shards = {p: p.read_bytes() for p in manifest_dir(one, "semantic").glob("*.csv")}
    monkeypatch.setattr("cgddi.semantic.launch", lambda *a, **k: pytest.fail("launched for a finished plan"))
    again = sample_semantic(one, dataclasses.replace(SAMPLER, num_processes=2), progress=False)
    assert (again["sampled"], again["skipped"]) == (0, len(plan))
    assert {p: p.read_bytes() for p in manifest_dir(one, "semantic").glob("*.csv")} == shards


_DYING_SAMPLER = (
    "import json, os, signal, sys\n"  # a sampler that dies (SIGKILL) right after its third chunk's shard
    "import cgddi.semantic as sem\nwritten, write = [], sem.write_shard\ndef dying_write(*args, **kwargs):\n    "
    "write(*args, **kwargs); written.append(1)\n    if len(written) == 3: os.kill(os.getpid(), "
    "signal.SIGKILL)\nsem.write_shard = dying_write\nsem.sample_semantic(sys.argv[1], "
    "sem.SemanticConfig(**json.loads(open(sys.argv[2]).read())), progress=False)\n"
)


def test_resume_after_kill(lora_work, tmp_path):
    work = _copy(lora_work, tmp_path / "w")
    slug = pd.read_csv(work / "lora" / "shared" / "concepts.csv").disease_slug.iloc[
        0
    ]  # one disease keeps the test short
    cfg = dataclasses.replace(SAMPLER, diseases=[slug], batch_size=1, chunk_size=3)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dataclasses.asdict(cfg)))
    script = tmp_path / "run.py"
    script.write_text(_DYING_SAMPLER)
    # killed at a known point
    proc = subprocess.run([sys.executable, str(script), str(work), str(config)], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    images = work / "semantic" / "shared" / "images"
    before = {p: p.stat().st_mtime_ns for p in images.rglob("*.png")}
    plan = _plan(work, cfg)
    assert len(before) == 9 < len(plan)  # three chunks of three, then the kill
    counts = sample_semantic(work, cfg, progress=False)
    assert counts["skipped"] >= len(before) and counts["sampled"] == len(plan) - counts["skipped"]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished images are not redone
    manifest = read_manifest(work, "semantic")
    assert sorted(manifest.image) == sorted(plan.image)
    assert not list(work.rglob(".*.tmp*"))  # no half-written file left behind
    again = sample_semantic(work, cfg, progress=False)  # a finished run does nothing
    assert again["sampled"] == 0 and again["skipped"] == len(plan)


def test_bad_input(lora_work, tmp_path):
    work = _copy(lora_work, tmp_path / "w")
    bad = lambda **kw: sample_semantic(work, dataclasses.replace(SAMPLER, **kw))
    with pytest.raises(ValueError, match=r"key 'tones' = \['olive'\] must be one of"):  # refused when made
        bad(tones=["olive"])
    with pytest.raises(DataError, match="no adapter for disease"):
        bad(diseases=["abscess"])  # a DDI disease the benchmark does not have
    with pytest.raises(DataError, match="no adapter to sample"):
        bad(min_train_samples=10**6)
    with pytest.raises(ValueError, match="ruler"):
        bad(ruler="sometimes")
    ddi = read_data(work)
    counts = ddi.disease_joined.value_counts()
    with pytest.raises(DataError, match="too few images"):
        ti_training_set(ddi, [], TIConfig(diseases=[counts.index[-1]], min_images=counts.iloc[-1] + 1))
    shutil.rmtree(manifest_dir(work, "healthy"))
    with pytest.raises(ManifestError, match="healthy"):
        sample_semantic(work, SAMPLER)
    with pytest.raises(ManifestError, match="healthy"):
        train_loras(work, LoRAConfig(steps=1, batch_size=1, resolution=32))


def test_finished_tokens_and_adapters_launch_no_process(lora_work, tmp_path, monkeypatch):
    """Every token and adapter trained: 03 and 04 in two processes launch none and train nothing; one token missing,
    03 launches."""
    work = _copy(lora_work, tmp_path / "w")
    weights = sorted(work.glob("textual_inversion/**/*.safetensors")) + sorted(work.glob("lora/**/*.safetensors"))
    assert weights  # tokens and adapters to keep
    stamps = lambda: {w: w.stat().st_mtime_ns for w in weights}
    before = stamps()
    launched = []
    monkeypatch.setattr("cgddi.shard.launch", lambda module, *a, **k: launched.append(module))
    train_textual_inversion(work, TIConfig(**TINY_TI, num_processes=2))
    train_loras(work, LoRAConfig(**TINY_LORA, num_processes=2))
    assert launched == [] and stamps() == before
    token = next((work / "textual_inversion" / "shared").glob("*/learned_embeds.safetensors"))
    token.unlink()
    # (the stand-in launch trains nothing: the launching call then finds the token missing and trains it itself)
    train_textual_inversion(work, TIConfig(**TINY_TI, num_processes=2))
    assert launched == ["cgddi.textual_inversion"] and token.exists()


def test_generators_per_split_never_see_their_test_images(lora_work, tmp_path):
    """03-05 with one generator set per split: no set learns from or samples on its split's test images, and 06 uses the
    run's own set."""
    from cgddi.classify import ClassifyConfig, run_experiments

    work = _copy(lora_work, tmp_path / "w")
    train_textual_inversion(
        work, TIConfig(resolution=32, steps=1, batch_size=2, generators="per_split", generator_splits=["clean_S36"])
    )
    train_loras(work, LoRAConfig(rank=2, resolution=32, steps=1, batch_size=2, generators="per_split"))
    cfg = dataclasses.replace(SAMPLER, generators="per_split", limit=4)
    sample_semantic(work, cfg, progress=False)
    test = set_test_ids(work, "lora", "clean_S36")[2]
    for p in (work / "lora" / "clean_S36").glob("*/lora.json"):
        assert not set(json.loads(p.read_text())["train_ids"]) & test, p
    manifest = read_manifest(work, "semantic")
    mine = manifest[manifest.adapter.str.startswith("lora/clean_S36/")]
    assert len(mine) == len(_plan(work, cfg)) > 0 and not set(mine.base_id) & test
    assert (manifest.adapter.str.startswith("lora/shared/") | manifest.adapter.str.startswith("lora/clean_S36/")).all()
    runs = run_experiments(work, ClassifyConfig(protocols=["clean"], seeds=[36], **SEMANTIC_RUNS))
    run = runs.set_index("experiment").loc["semantic"]
    assert run.generator_set == "clean_S36" and run.n_dropped_adapter == 0
    assert audit_leakage(work).empty
    # a faithful run finds no set it may use (the manifest holds clean_S36's only): named, not a quiet empty set
    with pytest.warns(UserWarning, match=r"faithful runs: no semantic image .*\['clean_S36'\]"):
        runs = run_experiments(work, ClassifyConfig(protocols=["faithful"], seeds=[36], **SEMANTIC_RUNS))
    run = runs.set_index(["protocol", "experiment"]).loc[("faithful", "semantic")]
    assert run.status == "skipped" and "missing: ['semantic']" in run.reason and run.synthetic_missing == ["semantic"]


def test_generators_per_protocol_clean_all_sees_no_clean_test_image(lora_work, tmp_path):
    """03-05 with `per_protocol`: `clean_all` learns from no image that any clean split tests, so every clean run uses
    it without a drop for its adapters, while faithful runs keep the shared set."""
    from cgddi.classify import ClassifyConfig, run_experiments
    from cgddi.manifest import split_test_ids
    from cgddi.data import write_splits

    work = _copy(lora_work, tmp_path / "w")
    write_splits(read_data(work), work, seeds=[36, 37])  # clean_all: the test images of both clean splits left out
    train_textual_inversion(
        work, TIConfig(resolution=32, steps=1, batch_size=2, generators="per_protocol", min_images=1)
    )
    train_loras(work, LoRAConfig(rank=2, resolution=32, steps=1, batch_size=2, generators="per_protocol"))
    cfg = dataclasses.replace(SAMPLER, generators="per_protocol", limit=4)
    sample_semantic(work, cfg, progress=False)
    tested = split_test_ids(work, "clean", None)
    assert set_test_ids(work, "lora", "clean_all") == ("clean", None, tested) and tested
    trained = [set(json.loads(p.read_text())["train_ids"]) for p in (work / "lora" / "clean_all").glob("*/lora.json")]
    assert trained and not set().union(*trained) & tested
    manifest = read_manifest(work, "semantic")
    assert set(manifest.adapter.str.split("/").str[1]) == {"shared", "clean_all"}
    runs = run_experiments(work, ClassifyConfig(**SEMANTIC_RUNS))
    done = runs[runs.status == "done"]
    assert set(done.protocol) == {"clean", "faithful"}
    assert (done.generator_set == done.protocol.map({"clean": "clean_all", "faithful": "shared"})).all()
    assert (done[done.protocol == "clean"].n_dropped_adapter == 0).all()
    # back to the paper's one shared set: clean_all's images leave the manifest (06 would train on them otherwise)
    sample_semantic(work, dataclasses.replace(cfg, generators="shared"), progress=False)
    assert set(read_manifest(work, "semantic").adapter.str.split("/").str[1]) == {"shared"}


def test_a_token_of_the_same_images_is_copied_from_its_twin_set(lora_work, tmp_path):
    """03: a disease whose training images are the same in two generator sets is trained once; the other set copies the
    token (`copied_from`), which is the token training gives."""
    from cgddi.data import write_splits
    from cgddi.layout import TEXTUAL_INVERSION

    work = _copy(lora_work, tmp_path / "w")
    write_splits(read_data(work), work, seeds=[36, 37])
    cfg = TIConfig(**{**TINY_TI, "steps": 3}, generators="per_split", generator_splits=["clean_S36", "clean_S37"])
    facts = lambda s, slug: json.loads((work / TEXTUAL_INVERSION / s / slug / "ti.json").read_text())
    embeds = lambda s, slug: (work / TEXTUAL_INVERSION / s / slug / "learned_embeds.safetensors").read_bytes()
    concepts = train_textual_inversion(work, cfg)
    by_set = {(r.generator_set, r.disease_slug): facts(r.generator_set, r.disease_slug) for r in concepts.itertuples()}
    twins = [(k, f) for k, f in by_set.items() if f["copied_from"]]
    assert twins, "the benchmark should have a disease with the same training images in both splits"
    for (gset, slug), f in twins:
        assert f["copied_from"] == "clean_S36" and gset == "clean_S37"  # the first set trains, the second copies
        assert f["train_ids"] == by_set[("clean_S36", slug)]["train_ids"]
        assert embeds(gset, slug) == embeds("clean_S36", slug)
    untwinned = [k for k in by_set if k[0] == "clean_S37" and not by_set[k]["copied_from"]]
    assert untwinned and all(
        by_set[k]["train_ids"] != by_set.get(("clean_S36", k[1]), {}).get("train_ids") for k in untwinned
    )
    # with its twin gone, the second set trains that token itself, to the same bytes
    (_, slug), _ = twins[0]
    copied = embeds("clean_S37", slug)
    for f in (work / TEXTUAL_INVERSION).glob(f"*/{slug}/ti.json"):
        f.unlink()
    train_textual_inversion(work, dataclasses.replace(cfg, generator_splits=["clean_S37"]))
    assert facts("clean_S37", slug)["copied_from"] is None and embeds("clean_S37", slug) == copied


def _two_diseases(work):
    "The adapters' concepts, two disease slugs, sampler arguments (two grey canvases) and a small sampler config."
    from cgddi.manifest import read_concepts

    concepts = read_concepts(work, "lora")
    canvas = [Image.fromarray(np.full((32, 32, 3), 150, np.uint8))] * 2
    args = (canvas, ["An image of x on a light-toned individual"] * 2, [1, 2])
    return concepts, tuple(concepts.disease_slug[:2]), args, dataclasses.replace(SAMPLER, resolution=32, steps=3)


@pytest.mark.slow
def test_a_compiled_unet_trains_the_same_token(tmp_path):
    "03's compile_unet: the same losses and token as the eager UNet (about a minute of compiling on a 2-core CPU)."
    from cgddi.diffusion import load_sd, resolve_model
    from cgddi.textual_inversion import add_token, train_token

    model = resolve_model("tiny", tmp_path)
    imgs = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8)) for i in range(3)]
    runs = {}
    for compiled in (False, True):
        sd = load_sd(model)
        add_token(sd.tokenizer, sd.text_encoder, "<a>")
        cfg = TIConfig(steps=3, batch_size=2, learning_rate=0.05, hflip=False, compile_unet=compiled)
        runs[compiled] = train_token(sd, "<a>", imgs, ["light", "dark", "medium"], cfg, progress=False)
    assert sd.unet._compiled_call_impl is not None
    np.testing.assert_allclose(runs[True][1], runs[False][1], atol=1e-4)
    torch.testing.assert_close(runs[True][0], runs[False][0], rtol=0, atol=1e-4)


def test_compiled_sampler_swaps_adapters_without_recompiling(lora_work, tmp_path):
    """With compile_unet the UNet compiles once, after the first adapter is fused; a disease switch swaps weights in
    place, also to a later generator set where a disease has its own, wider rank (`params/diseases/<slug>.yaml`): the
    graph runs the fused base weights, so an adapter's rank is not in it."""
    import torch
    from cgddi.semantic import SemanticSampler
    from cgddi.diffusion import resolve_model

    work = _copy(lora_work, tmp_path / "w")
    concepts, (a, b), args, cfg = _two_diseases(work)
    shutil.copytree(work / "lora" / "shared", work / "lora" / "narrow")
    narrow = concepts.assign(lora=concepts.lora.str.replace("lora/shared/", "lora/narrow/"))
    train_loras(work, LoRAConfig(**TINY_LORA, disease_settings={b: {"rank": 3}}))  # b's shared adapter, now rank 3
    assert [lora_rank(work / c.set_index("disease_slug").loc[b, "lora"]) for c in (narrow, concepts)] == [2, 3]
    model = resolve_model("tiny", work)
    eager = SemanticSampler(work, model, narrow, cfg)
    want = [[np.asarray(im, np.int16) for im in eager(d, *args)] for d in (a, b)]
    want.append([np.asarray(im, np.int16) for im in SemanticSampler(work, model, concepts, cfg)(b, *args)])
    torch._dynamo.reset()
    compiled = SemanticSampler(work, model, narrow, dataclasses.replace(cfg, compile_unet=True))
    compiled(a, *args)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for k, d in [(1, b), (0, a), (2, b)]:
        if k == 2:
            compiled.use_set(concepts)
        got = [np.asarray(im, np.int16) for im in compiled(d, *args)]
        assert all(np.abs(g - w).max() <= 2 for g, w in zip(got, want[k])), d  # the right adapter, fused
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # no recompilation on a switch
    assert not all((w == v).all() for w, v in zip(want[1], want[2]))  # the wider adapter is another adapter


def test_an_image_does_not_depend_on_the_adapters_fused_before(lora_work):
    "A disease sampled after others gives the same UNet weights and images as in a fresh sampler (no unfuse residue)."
    from cgddi.semantic import SemanticSampler
    from cgddi.diffusion import resolve_model

    concepts, (a, b), args, cfg = _two_diseases(lora_work)
    fresh = SemanticSampler(lora_work, resolve_model("tiny", lora_work), concepts, cfg)
    want = [np.asarray(im) for im in fresh(b, *args)]
    want_weights = [w.clone() for w in fresh._fused_weights()]
    base = [w0 for _, w0 in fresh.base]
    used = SemanticSampler(lora_work, resolve_model("tiny", lora_work), concepts, cfg)
    for d in (a, b, a, b):
        got = [np.asarray(im) for im in used(d, *args)]
    assert all((g == w).all() for g, w in zip(got, want))
    assert all(torch.equal(g, w) for g, w in zip(used._fused_weights(), want_weights))
    assert not all(torch.equal(g, w) for g, w in zip(want_weights, base))  # b's adapter is fused in, not a no-op


def test_a_remade_canvas_remakes_only_its_images(lora_work, tmp_path):
    work = _copy(lora_work, tmp_path / "canvas")
    slug = pd.read_csv(work / "lora" / "shared" / "concepts.csv").disease_slug.iloc[0]
    cfg = dataclasses.replace(SAMPLER, diseases=[slug])
    sample_semantic(work, cfg, progress=False)
    plan = _plan(work, cfg)
    before = {p: (work / p).stat().st_mtime_ns for p in plan.image}
    # 01 remade this healthy image (e.g. with another mask): its manifest row has a new params_hash
    canvas = plan.canvas.iloc[0]
    shard = work / "manifest" / "healthy" / "all.csv"
    rows = pd.read_csv(shard)
    rows.loc[rows.image == canvas, "params_hash"] = "remade"
    rows.to_csv(shard, index=False)
    counts = sample_semantic(work, cfg, progress=False)
    redone = {p for p, t in before.items() if (work / p).stat().st_mtime_ns != t}
    assert redone == set(plan.image[plan.canvas == canvas]) and counts["sampled"] == len(redone) > 0


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _released(work, slug, dst):
    """A released adapter folder, as the authors' hub repositories hold one, made from this work dir's token and LoRA of
    `slug`."""
    from cgddi.publish import released_aliases

    folder = Path(dst) / released_aliases().set_index("disease_slug").loc[slug, "released"]
    folder.mkdir(parents=True)
    shutil.copy(work / "textual_inversion" / "shared" / slug / "learned_embeds.safetensors", folder)
    shutil.copy(work / "lora" / "shared" / slug / "pytorch_lora_weights.safetensors", folder)
    return folder


@pytest.mark.parametrize(
    "case, expect",
    [
        ("pickle", "not a safetensors file"),
        ("wrong width", "has shape [2, 999]"),
        ("unknown layer", "names no linear layer"),
        ("outside symlink", "is a link"),
    ],
)
def test_a_failed_adapter_import_writes_nothing(lora_work, tmp_path, case, expect):
    "Two released folders, the second broken: one error naming its file, and neither is written (no half import)."
    from safetensors.torch import save_file
    from cgddi.manifest import read_concepts
    from cgddi.publish import import_adapters

    work = _copy(lora_work, tmp_path / "w")
    a, b = read_concepts(work, "lora").disease_slug[:2]
    good, bad = _released(work, a, tmp_path / "rel"), _released(work, b, tmp_path / "rel")
    lora = bad / "pytorch_lora_weights.safetensors"
    from safetensors import safe_open

    # a real layer
    with safe_open(str(lora), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("to_q.lora.down.weight"))
    if case == "pickle":
        lora.unlink()
        torch.save({key: torch.zeros(2, 8)}, lora)
    elif case == "wrong width":
        save_file({key: torch.zeros(2, 999), key.replace("down", "up"): torch.zeros(8, 2)}, lora)
    elif case == "unknown layer":
        save_file({key.replace("to_q", "to_z"): torch.zeros(2, 8)}, lora)
    else:
        (tmp_path / "elsewhere.safetensors").write_bytes(lora.read_bytes())
        lora.unlink()
        lora.symlink_to(tmp_path / "elsewhere.safetensors")
    (work / "textual_inversion" / "shared" / a / "learned_embeds.safetensors").write_bytes(
        b"locally trained"
    )  # must survive
    before = _files(work)
    with pytest.raises(ValueError) as e:
        import_adapters([good, bad], work, "tiny")
    assert str(lora) in str(e.value) and expect in str(e.value), str(e.value)
    assert _files(work) == before and not list(work.glob(".import-*"))


def test_a_token_file_changed_behind_03s_back_is_retrained(lora_work, tmp_path):
    """ti.json records the hash of the embedding it wrote: a replaced file (e.g. by a failed import) is trained again,
    not kept."""
    from safetensors.torch import load_file, save_file
    from cgddi.manifest import read_concepts

    work = _copy(lora_work, tmp_path / "w")
    f = work / read_concepts(work, "textual_inversion").embeds.iloc[0]
    trained = load_file(f)
    save_file({k: torch.zeros_like(v) for k, v in trained.items()}, f)
    train_textual_inversion(work, TIConfig(resolution=32, steps=2, batch_size=2))
    again = load_file(f)
    assert trained.keys() == again.keys() and all(torch.allclose(trained[k], again[k], atol=1e-6) for k in trained)


@pytest.mark.parametrize("stage", ["textual_inversion", "lora"])
def test_a_training_killed_at_a_known_step_resumes_to_the_same_result(lora_work, tmp_path, monkeypatch, stage):
    """Checkpoints every 2 steps: a crash in step 5 of 6 resumes from step 4 and ends with the weights of an
    uninterrupted run."""
    import cgddi.textual_inversion as ti_module, cgddi.lora as lora_module
    from safetensors.torch import load_file
    from cgddi.diffusion import diffusion_loss, STATE_DIR
    from cgddi.manifest import read_concepts

    slug = read_concepts(lora_work, "lora").disease_slug.iloc[0]
    if stage == "textual_inversion":
        module, weights = ti_module, Path("textual_inversion") / "shared" / slug / "learned_embeds.safetensors"
        train = lambda w: train_textual_inversion(
            w, TIConfig(resolution=32, steps=6, batch_size=2, checkpoint_every=2, diseases=[slug])
        )
    else:
        module, weights = lora_module, Path("lora") / "shared" / slug / "pytorch_lora_weights.safetensors"
        train = lambda w: train_loras(
            w, LoRAConfig(rank=2, resolution=32, steps=6, batch_size=2, checkpoint_every=2, diseases=[slug])
        )
    ref, killed = _copy(lora_work, tmp_path / "ref"), _copy(lora_work, tmp_path / "killed")
    train(ref)
    calls = []

    def counted(*a, **k):
        calls.append(1)
        if crash and len(calls) == 5:
            raise KeyboardInterrupt("killed in step 5")
        return diffusion_loss(*a, **k)

    monkeypatch.setattr(module, "diffusion_loss", counted)
    crash = True
    with pytest.raises(KeyboardInterrupt):
        train(killed)
    state = killed / weights.parent / STATE_DIR
    assert json.loads((state / "state.json").read_text())["step"] == 4
    calls.clear()
    crash = False
    train(killed)
    assert len(calls) == 2  # steps 5 and 6 only: resumed, not restarted
    a, b = load_file(ref / weights), load_file(killed / weights)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not state.exists()  # a finished training removes its checkpoints


def test_a_full_size_model_on_the_cpu_is_named_before_it_loads(lora_work, tmp_path):
    """03, 04 and 05 warn (CPUWarning) when sd_model is not the tiny or mini model and the device is the CPU; the tiny
    model copied without its label stands in for a hub model."""
    import warnings
    from cgddi.diffusion import CPUWarning
    from cgddi.manifest import read_concepts
    from cgddi.tiny import TINY_MARKER

    work = _copy(lora_work, tmp_path / "w")
    unlabelled = _copy(work / "models" / "tiny-sd", tmp_path / "unlabelled-sd")
    (unlabelled / TINY_MARKER).unlink()
    slug = read_concepts(work, "lora").disease_slug.iloc[0]
    for train, cfg in [(train_textual_inversion, TIConfig), (train_loras, LoRAConfig)]:
        with pytest.warns(CPUWarning, match=f"sd_model '{unlabelled}' is not cgddi's tiny or mini model"):
            train(work, cfg(sd_model=str(unlabelled), resolution=32, steps=1, batch_size=2, diseases=[slug]))
    with pytest.warns(CPUWarning, match="Change runtime type"):
        sample_semantic(work, dataclasses.replace(SAMPLER, sd_model=str(unlabelled), limit=1))
    # the labelled tiny model: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", CPUWarning)
        sample_semantic(_copy(lora_work, tmp_path / "w2"), dataclasses.replace(SAMPLER, limit=1))


def test_generators_per_clean_split_keep_the_shared_set_for_faithful(lora_work, tmp_path):
    """03-05 with `per_clean_split`: the shared set (faithful runs) and one set per clean split, each learnt without its
    split's test images; every clean run uses its own set, no adapter drop."""
    from cgddi.classify import ClassifyConfig, run_experiments
    from cgddi.data import write_splits

    work = _copy(lora_work, tmp_path / "w")
    write_splits(read_data(work), work, seeds=[36, 37])
    train_textual_inversion(
        work, TIConfig(resolution=32, steps=1, batch_size=2, generators="per_clean_split", min_images=1)
    )
    train_loras(work, LoRAConfig(rank=2, resolution=32, steps=1, batch_size=2, generators="per_clean_split"))
    cfg = dataclasses.replace(SAMPLER, generators="per_clean_split", limit=4)
    sample_semantic(work, cfg, progress=False)
    for s in (36, 37):
        test = set_test_ids(work, "lora", f"clean_S{s}")[2]
        trained = [
            set(json.loads(p.read_text())["train_ids"]) for p in (work / "lora" / f"clean_S{s}").glob("*/lora.json")
        ]
        assert test and trained and not set().union(*trained) & test
    manifest = read_manifest(work, "semantic")
    assert set(manifest.adapter.str.split("/").str[1]) == {"shared", "clean_S36", "clean_S37"}
    runs = run_experiments(work, ClassifyConfig(**SEMANTIC_RUNS))
    done = runs[runs.status == "done"]
    assert set(done.protocol) == {"clean", "faithful"}
    expected = [f"clean_S{s}" if p == "clean" else "shared" for p, s in zip(done.protocol, done.seed)]
    assert done.generator_set.tolist() == expected
    assert (done[done.protocol == "clean"].n_dropped_adapter == 0).all()
    audit = audit_leakage(work)  # the faithful runs keep the paper's rule, which lets the shared set's ties through
    assert audit[audit.protocol == "clean"].empty and len(audit[audit.protocol == "faithful"])
