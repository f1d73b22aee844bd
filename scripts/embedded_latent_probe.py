"""How much of an object's shape the embedded model's latents hold: a small classifier trained on the encoder's
latent of one 4-frame chunk (8x8 cells, 8 channels) to tell circle, square and triangle, scored on held-out world
clips. The decoder draws each chunk from that latent alone, so this bounds what decoder training can reach: if the
probe tells shapes apart far more often than the decoded clips show them (evaluate's `recon` section), the
information is there and the decoder loses it; if not, the encoder must change (and the denoiser with it).

    python scripts/embedded_latent_probe.py [--weights DIR] [--clips 12800] [--epochs 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="a weights folder (default: the shipped one)")
    p.add_argument("--clips", type=int, default=12800, help="training clips (4 chunks each)")
    p.add_argument("--held-out", type=int, default=1024, help="held-out clips")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from pipelines.embedded import world
    from pipelines.embedded.backend import EmbeddedBackend
    from pipelines.embedded.vae import frames_to_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae = EmbeddedBackend(args.weights).vae

    def chunks(n: int, seed: int):
        """(n * T, C, h, w) latents of each chunk, with the clip's shape index for each (and its colour and
        background indices, for the breakdown)."""
        g = torch.Generator().manual_seed(seed)
        zs, ys, looks = [], [], []
        for _ in range(0, n, 64):
            b = world.sample_batch(64, g)
            with torch.no_grad():
                z = vae.encode(frames_to_model(world.to_uint8(world.render(b))))  # (64, C, T, h, w)
            zs.append(z.permute(0, 2, 1, 3, 4).flatten(0, 1))
            ys.append(b.shape.repeat_interleave(z.shape[2]))
            looks.append(torch.stack([b.obj, b.bg], 1).repeat_interleave(z.shape[2], dim=0))
        return torch.cat(zs), torch.cat(ys), torch.cat(looks)

    t0 = time.time()
    x_tr, y_tr, _ = chunks(args.clips, 1)
    x_te, y_te, look_te = chunks(args.held_out, 2)
    C = x_tr.shape[1]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(C, 64, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.GELU(),
        torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.GELU(), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(64, len(world.SHAPES)))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    best = 0.0
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(x_tr)).split(128):
            loss = torch.nn.functional.cross_entropy(net(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(x_te).argmax(1) == y_te).float().mean().item()
        best = max(best, acc)
        print(f"epoch {epoch + 1}: held-out shape accuracy per chunk {acc:.1%} ({time.time() - t0:.0f} s)", flush=True)
    print(f"best held-out accuracy {best:.1%} on {len(x_te)} chunks of {args.held_out} clips")
    # where the last epoch's probe misses: squares by colour and by background (the shapes the model rounds most)
    with torch.no_grad():
        right = net(x_te).argmax(1) == y_te
    square = y_te == world.SHAPES.index("square")
    for col, names in ((0, world.OBJ_NAMES), (1, world.BG_NAMES)):
        parts = [f"{name} {right[square & (look_te[:, col] == i)].float().mean().item():.0%}"
                 for i, name in enumerate(names) if (square & (look_te[:, col] == i)).any()]
        print(f"squares told right per chunk, by {'colour' if col == 0 else 'background'}: " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
