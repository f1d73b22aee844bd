"""The embedded model: a small latent video diffusion transformer trained on a procedural world.

Nothing happens at import time. The pieces:

- `world`     the procedural world of captioned clips (training data, test data, eval prompts)
- `text`      word-level tokenizer for free-text prompts (unknown words -> <unk>, never an error)
- `vae`       convolutional video autoencoder, 16x64x64x3 pixels <-> 4x8x8x8 latents
- `dit`       diffusion transformer over spacetime latent patches, cross-attention to prompt tokens
- `diffusion` flow-matching maths: training loss and the Euler sampler (t2v, i2v, v2v, inpaint)
- `unet`      an alternative denoiser (factorised U-Net, same interface; not shipped)
- `weights`   the shipped weights' version, location and file format (used by backend and export)
- `backend`   the studio backend (`EMBEDDED_SPEC`, `embedded_entry`)
- `training/` the training stages and the shipped recipe (`recipe.toml`); never imports `backend`
- `train`     `python -m pipelines.embedded.train` (stages vae, decoder, cache, dit, export)
- `evaluate`  `python -m pipelines.embedded.evaluate` (pixel analyser + speed figures)
"""
