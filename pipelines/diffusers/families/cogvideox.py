"""CogVideoX: T5 text encoder, (B, F, C, h, w) latents, learned or rotary position embeddings."""

from __future__ import annotations

from typing import Any

from pipelines.diffusers.families.base import Family

_T2V = {"t2v": "CogVideoXPipeline", "v2v": "CogVideoXVideoToVideoPipeline",
        "inpaint": "CogVideoXVideoToVideoPipeline+blend"}


class CogVideoX(Family):
    name = "cogvideox"
    label = "CogVideoX"
    layout = "bfchw"
    local_pipelines = {
        "CogVideoXPipeline": _T2V,
        "CogVideoXVideoToVideoPipeline": _T2V,
        "CogVideoXImageToVideoPipeline": {"i2v": "CogVideoXImageToVideoPipeline"},
    }
    # every CogVideoX pipeline forces num_videos_per_prompt to 1 and encodes its image / video once per
    # generator (input[i] for generator i): the prompt and the input go in n times
    batch_by = {"CogVideoXPipeline": "prompts", "CogVideoXVideoToVideoPipeline": "prompts+clips",
                "CogVideoXImageToVideoPipeline": "prompts+images"}
    compilable = False  # CogVideoXTransformer3DModel declares no _repeated_blocks
    memory_advice = "CogVideoX's VAE decode is the peak: the profiles below 'quality' tile it"

    def arguments(self, pipe, request) -> dict[str, Any]:
        # the text length the transformer's position embeddings were built for
        return {"max_sequence_length": pipe.transformer.config.max_text_seq_length}
