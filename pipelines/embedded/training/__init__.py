"""Training of the embedded model, apart from its serving backend (which it never imports).

- `recipe.toml`   the shipped recipe: what `python -m pipelines.embedded.train` uses with no flags
- `config`        `TrainConfig` (frozen; `TrainConfig.shipped()` reads the recipe)
- `common`        atomic checkpoints, the LR schedule, logging, clip rendering, loading the autoencoder
- `autoencoder`   stages vae and decoder
- `denoiser`      stages cache and dit (the denoiser: a DiT, or a U-Net if its config says so)
- `export`        stage export: the shipped files (format in `pipelines.embedded.weights`)

The command line is `pipelines.embedded.train`.
"""
