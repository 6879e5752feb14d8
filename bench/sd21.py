"""Stable Diffusion 2.1-base built from its published architecture with random weights (speed and memory do not
depend on the weights), plus a random rank-8 adapter and token, in the layout the cgddi stages read.
Shared by bench/semantic.py and bench/parametric_training.py; `--tiny` swaps in cgddi's tiny model for a CPU check."""
from pathlib import Path
import pandas as pd
import torch
from transformers import CLIPTextConfig, CLIPTextModel
from diffusers import AutoencoderKL, UNet2DConditionModel, PNDMScheduler, StableDiffusionPipeline
from cgddi.tiny import clip_tokenizer, tiny_sd
from cgddi.lora import lora_config, save_lora
from cgddi.textual_inversion import save_learned_embeds
from peft.utils import get_peft_model_state_dict
from diffusers.utils import convert_state_dict_to_diffusers

def sd21_base(out_dir, seed=0):
    "Write SD 2.1-base's architecture (865 M UNet, 83 M VAE, 340 M OpenCLIP-H text tower) with random weights."
    out = Path(out_dir)
    if (out/"model_index.json").exists(): return out
    torch.manual_seed(seed)
    tok = clip_tokenizer()
    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                cross_attention_dim=1024, use_linear_projection=True)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, sample_size=512)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                      num_hidden_layers=23, projection_dim=512, hidden_act="gelu", max_position_embeddings=77,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                          set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=te, tokenizer=tok, scheduler=sched, safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(out, safe_serialization=True)
    return out

def model(tiny, root):
    "The model folder: SD 2.1-base from config, or the tiny one."
    return tiny_sd(Path(root)/"tiny-sd") if tiny else sd21_base(Path(root)/"sd21-base")

def fake_concept(work, model_dir, slug="bench", rank=8, seed=0):
    "A random token and a random (non-zero) rank-`rank` adapter under work/, as 03 and 04 write them; returns lora concepts rows."
    work = Path(work); torch.manual_seed(seed)
    sd = StableDiffusionPipeline.from_pretrained(model_dir, use_safetensors=True, safety_checker=None, requires_safety_checker=False)
    token = f"<{slug}>"
    embeds = save_learned_embeds(work/"textual_inversion"/slug/"learned_embeds.safetensors", token,
                                 torch.randn(1, sd.text_encoder.config.hidden_size) * 0.01)
    sd.unet.add_adapter(lora_config(rank), adapter_name=slug)
    with torch.no_grad():
        for n, p in sd.unet.named_parameters():
            if "lora_B" in n: p.normal_(0, 1e-3)  # trained adapters are not zero: fusing must do real work
    lora = save_lora(work/"lora"/slug, convert_state_dict_to_diffusers(get_peft_model_state_dict(sd.unet, adapter_name=slug)))
    return pd.DataFrame([dict(disease_joined=slug, disease_slug=slug, token=token, malignant=False, n_train=20,
                              embeds=str(embeds.relative_to(work)), lora=str(lora.relative_to(work)))])
