"""Stable Diffusion 2.1-base built from its published architecture with random weights (speed and memory do not
depend on the weights), plus a random rank-8 adapter and token, in the layout the cgddi stages read.
Shared by bench/semantic.py and bench/parametric_training.py; `--tiny` swaps in cgddi's tiny model for a CPU check."""

from pathlib import Path
import pandas as pd
import torch
from diffusers import StableDiffusionPipeline
from cgddi.tiny import random_pipeline, tiny_sd
from cgddi.lora import lora_config, save_lora
from cgddi.textual_inversion import save_learned_embeds
from peft.utils import get_peft_model_state_dict
from diffusers.utils import convert_state_dict_to_diffusers


def sd21_base(out_dir, seed=0):
    """SD 2.1-base's architecture (865 M UNet, 84 M VAE, 340 M OpenCLIP-H text tower) with random weights, from cgddi's
    shipped configs."""
    return random_pipeline("sd21-base", out_dir, seed=seed)


def model(tiny, root):
    "The model folder: SD 2.1-base from config, or the tiny one."
    return tiny_sd(Path(root) / "tiny-sd") if tiny else sd21_base(Path(root) / "sd21-base")


def fake_concept(work, model_dir, slug="bench", rank=8, seed=0):
    """A random token and a random (non-zero) rank-`rank` adapter under work/, as 03 and 04 write them; returns lora
    concepts rows."""
    work = Path(work)
    torch.manual_seed(seed)
    sd = StableDiffusionPipeline.from_pretrained(
        model_dir, use_safetensors=True, safety_checker=None, requires_safety_checker=False
    )
    token = f"<{slug}>"
    embeds = save_learned_embeds(
        work / "textual_inversion" / slug / "learned_embeds.safetensors",
        token,
        torch.randn(1, sd.text_encoder.config.hidden_size) * 0.01,
    )
    sd.unet.add_adapter(lora_config(rank), adapter_name=slug)
    with torch.no_grad():
        for n, p in sd.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 1e-3)  # trained adapters are not zero: fusing must do real work
    lora = save_lora(
        work / "lora" / slug, convert_state_dict_to_diffusers(get_peft_model_state_dict(sd.unet, adapter_name=slug))
    )
    return pd.DataFrame(
        [
            dict(
                disease_joined=slug,
                disease_slug=slug,
                token=token,
                malignant=False,
                n_train=20,
                embeds=str(embeds.relative_to(work)),
                lora=str(lora.relative_to(work)),
            )
        ]
    )
