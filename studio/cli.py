"""`studio` command: serve, generate, train-embedded, eval-embedded. Argument parsing happens in main() only."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from pipelines.contract import REQUEST_TYPES, RequestError

EXIT_BAD_ARGS = 2
EXIT_FAILED = 1


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end with one line naming the problem, not a usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_ARGS, f"{self.prog}: error: {message}\n")


def _add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860)")
    p.add_argument("--data-dir", default=None, help="where clips and the gallery live (default ./studio-data, or STUDIO_DATA_DIR)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="studio", description="A studio for video diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    serve = sub.add_parser("serve", help="start the web studio")
    _add_server_args(serve)

    g = sub.add_parser("generate", help="generate clips headless into the gallery")
    g.add_argument("--mode", choices=sorted(REQUEST_TYPES), default="t2v")
    g.add_argument("--prompt", default="")
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--seed", type=int, default=None, help="first seed (default: random); later clips use seed+1, ...")
    g.add_argument("--seeds", type=int, default=1, help="number of clips, one per seed (1 to 8)")
    g.add_argument("--steps", type=int)
    g.add_argument("--cfg", type=float, dest="cfg_scale")
    g.add_argument("--frames", type=int)
    g.add_argument("--fps", type=int)
    g.add_argument("--width", type=int)
    g.add_argument("--height", type=int)
    g.add_argument("--model", default=None, help="registry id, hub repo id or local diffusers folder")
    g.add_argument("--profile", default=None, help="speed/memory profile of the model")
    g.add_argument("--image", help="first frame (i2v)")
    g.add_argument("--video", help="source video (v2v, inpaint)")
    g.add_argument("--mask", help="mask image or video: white = regenerate, black = keep (inpaint)")
    g.add_argument("--strength", type=float, help="0 returns the input, 1 ignores it (v2v, inpaint)")
    g.add_argument("--data-dir", default=None)
    g.add_argument("--out", default=None, help="also copy the mp4 here (a file, or a folder for several seeds)")
    g.add_argument("--json", action="store_true", help="print a JSON array, one object per clip")
    g.add_argument("--device", default=None)
    g.add_argument("--threads", type=int, default=None)

    t = sub.add_parser("train-embedded", help="train the embedded model (see pipelines/embedded)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    e = sub.add_parser("eval-embedded", help="evaluate the embedded model", add_help=False)
    e.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _request_from_args(args: argparse.Namespace):
    cls = REQUEST_TYPES[args.mode]
    fields = dict(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        steps=args.steps,
        cfg_scale=args.cfg_scale,
        frames=args.frames,
        fps=args.fps,
        width=args.width,
        height=args.height,
        profile=args.profile,
    )
    if args.model:
        fields["model_id"] = args.model
    media = {"image": args.image, "video": args.video, "mask": args.mask}
    for name in cls.media_fields:
        if not media[name]:
            raise RequestError(name, f"--{name} is required for --mode {args.mode}")
        fields[name] = str(Path(media[name]).expanduser().resolve())
    for name, value in media.items():
        if value and name not in cls.media_fields:
            raise RequestError(name, f"--{name} is not used by --mode {args.mode}")
    if args.strength is not None:
        if args.mode not in ("v2v", "inpaint"):
            raise RequestError("strength", f"--strength is not used by --mode {args.mode}")
        fields["strength"] = args.strength
    return cls(**fields)


def _copy_out(out: str, clips: list, seeds: list[int]) -> list[Path]:
    target = Path(out).expanduser()
    copies = []
    if len(clips) == 1 and not (target.is_dir() or out.endswith("/")):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clips[0].video, target)
        return [target.resolve()]
    folder = target if (target.is_dir() or out.endswith("/")) else target.parent
    stem = None if folder == target else target.stem
    folder.mkdir(parents=True, exist_ok=True)
    for clip, seed in zip(clips, seeds):
        dest = folder / (f"{stem}-seed{seed}.mp4" if stem else f"{clip.id}.mp4")
        shutil.copyfile(clip.video, dest)
        copies.append(dest.resolve())
    return copies


def cmd_generate(args: argparse.Namespace) -> int:
    from studio.settings import Settings
    from studio.wiring import build_studio

    try:
        request = _request_from_args(args)
    except RequestError as e:
        print(f"studio: error: {e}", file=sys.stderr)
        return EXIT_BAD_ARGS
    settings = Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None,
                                 device=args.device, torch_threads=args.threads)
    studio = build_studio(settings)
    try:
        try:
            submission = studio.jobs.submit(request, seeds=args.seeds)
        except RequestError as e:
            print(f"studio: error: {e}", file=sys.stderr)
            return EXIT_BAD_ARGS
        statuses = studio.jobs.wait(submission.job_ids)
        failed = [s for s in statuses if s.status != "done"]
        clips = [studio.gallery.get(s.clip_id) for s in statuses if s.status == "done"]
        copies = _copy_out(args.out, clips, [c.seed for c in clips]) if args.out and clips else []
        if args.json:
            rows = []
            for i, c in enumerate(clips):
                rows.append({
                    "id": c.id, "path": str(c.video), "seed": c.seed, "prompt": c.prompt, "model": c.model_id,
                    "model_version": c.model_version, "mode": c.mode, "steps": c.steps, "cfg_scale": c.cfg_scale,
                    "frames": c.frames, "fps": c.fps, "width": c.width, "height": c.height,
                    "batch_id": c.batch_id, "seconds": round(c.generation_seconds, 3),
                    **({"out": str(copies[i])} if copies else {}),
                })
            print(json.dumps(rows, indent=2))
        else:
            for i, c in enumerate(clips):
                print(copies[i] if copies else c.video)
        for s in failed:
            print(f"studio: error: job {s.job_id} {s.status}: {s.error or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED if failed else 0
    finally:
        studio.close()


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from studio.settings import Settings

    settings = Settings.from_env(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        host=args.host, port=args.port, share=args.share or None,
        device=args.device, torch_threads=args.threads,
    )
    tmp = settings.data_dir.resolve() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp))  # before gradio is imported: uploads stay in the data dir
    from studio.ui.app import launch

    launch(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        return cmd_generate(args)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "train-embedded":
        from pipelines.embedded.train import main as train_main

        return train_main(args.rest) or 0
    if args.command == "eval-embedded":
        from pipelines.embedded.evaluate import main as eval_main

        return eval_main(args.rest) or 0
    return EXIT_BAD_ARGS


if __name__ == "__main__":
    sys.exit(main())
