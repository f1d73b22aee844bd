"""`studio` command: serve, generate, train-embedded, eval-embedded. Argument parsing happens in main() only."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from pipelines.contract import REQUEST_TYPES, RequestError, SweepRequest, parse_axis, parse_lora
from studio.clips import clip_json, recipe_json
from studio.facade import FROM_CLIP, INTERPOLATION_FACTORS, INTERPOLATION_METHODS

EXIT_BAD_ARGS = 2
EXIT_FAILED = 1


def _no_models():  # type: ignore[no-untyped-def]
    """For commands that only read and edit the gallery or the users: no model registry to build (building
    it imports the diffusers catalog and torch, seconds of a command that runs in a fraction of one)."""
    from pipelines.contract import ModelRegistry

    return ModelRegistry({}, default_id="none")


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end with one line naming the problem, not a usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_ARGS, f"{self.prog}: error: {message}\n")


def _add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860)")
    p.add_argument("--data-dir", default=None, help="where clips and the gallery live (default: STUDIO_DATA_DIR, "
                   "else the per-user data dir, e.g. ~/.local/share/video-diffusion-studio)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("--auth", action="store_true", default=None,
                   help="every page, handler, API call and file needs a login (users: `studio users add`); "
                   "also STUDIO_AUTH=required")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="let --share or a non-loopback --host open the studio without a login to anyone who "
                   "reaches it (they can generate, see and delete every clip)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="studio", description="A studio for video diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    serve = sub.add_parser("serve", help="start the web studio")
    _add_server_args(serve)
    serve.add_argument("--executor", choices=["local", "ray"], default=None,
                       help="where generations run: local (this process, the default) or ray (a pool of Ray "
                       "workers, one per GPU; needs `pip install -e \".[ray]\"`); also STUDIO_EXECUTOR")
    serve.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="with --executor ray: the cluster to join (also RAY_ADDRESS); none: start a local one")
    serve.add_argument("--ray-workers", type=int, default=None, metavar="N",
                       help="with --executor ray: at most N workers (default: one per GPU, or per CPU without GPUs)")

    g = sub.add_parser("generate", help="generate clips headless into the gallery")
    g.add_argument("--mode", choices=sorted(REQUEST_TYPES), default="t2v",
                   help="t2v, i2v, v2v, inpaint, or extend (continue a clip: --clip ID)")
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
    g.add_argument("--transformer-file", default=None, metavar="FILE.gguf",
                   help="the transformer's weights from a GGUF file (Q8_0, Q4_K, ...) for --model (a Wan, LTX, "
                   "HunyuanVideo or Mochi catalog id); a file outside the GGUF folder is linked into it")
    g.add_argument("--image", help="first frame (i2v)")
    g.add_argument("--video", help="source video (v2v, inpaint)")
    g.add_argument("--mask", help="mask image or video: white = regenerate, black = keep (inpaint)")
    g.add_argument("--strength", type=float, help="0 returns the input, 1 ignores it (v2v, inpaint)")
    g.add_argument("--clip", default=None, help="a gallery clip as the input instead of --video/--image (its "
                   "last frame for --mode extend, its first for i2v); the new clip records it as its parent")
    g.add_argument("--frame", type=int, default=None, help="with --clip: the frame to start from (i2v, extend)")
    g.add_argument("--vary", action="append", default=[], metavar="AXIS=VALUES",
                   help="sweep an axis (cfg, steps, strength, frames, model, prompt): --vary cfg=3,5,7, "
                   "--vary \"prompt=a red circle|a red square\"; at most two")
    g.add_argument("--lora", action="append", default=[], metavar="PATH_OR_NAME[:WEIGHT]",
                   help="apply a LoRA (a .safetensors file in the LoRA folder, or a path), weight 1 unless given; "
                   "repeat to stack")
    g.add_argument("--data-dir", default=None)
    g.add_argument("--out", default=None, help="also copy the mp4 here (a file, or a folder for several seeds)")
    g.add_argument("--json", action="store_true", help="print a JSON array, one object per clip")
    g.add_argument("--device", default=None)
    g.add_argument("--threads", type=int, default=None)

    lo = sub.add_parser("loras", help="the LoRA folder (STUDIO_LORA_DIR, else <data dir>/loras)")
    losub = lo.add_subparsers(dest="loras_command", required=True, parser_class=OneLineParser)
    lo_list = losub.add_parser("list", help="each LoRA file with its family guess, rank and size")
    lo_list.add_argument("--data-dir", default=None)
    lo_list.add_argument("--json", action="store_true")

    gal = sub.add_parser("gallery", help="list, show, star, tag, note, delete, export and import clips")
    gsub = gal.add_subparsers(dest="gallery_command", required=True, parser_class=OneLineParser)
    lst = gsub.add_parser("list", help="clips, newest first")
    lst.add_argument("--search", default="", help="words of the prompt or negative prompt")
    lst.add_argument("--mode", default=None)
    lst.add_argument("--model", default=None)
    lst.add_argument("--starred", action="store_true")
    lst.add_argument("--tag", default=None)
    lst.add_argument("--sweep", default=None, help="only the clips of one sweep")
    lst.add_argument("--sort", default="newest", help="newest, oldest, cfg, steps or seed")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true")
    show = gsub.add_parser("show", help="one clip, with its lineage")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    star = gsub.add_parser("star", help="star a clip (--off to unstar)")
    star.add_argument("id")
    star.add_argument("--off", action="store_true")
    tag = gsub.add_parser("tag", help="add tags to a clip (--remove to take them off)")
    tag.add_argument("id")
    tag.add_argument("tags", nargs="+")
    tag.add_argument("--remove", action="store_true")
    note = gsub.add_parser("note", help="set a clip's note (empty text clears it)")
    note.add_argument("id")
    note.add_argument("text")
    delete = gsub.add_parser("delete", help="delete a clip and its files")
    delete.add_argument("id")
    export = gsub.add_parser("export", help="clips, thumbnails, inputs and a manifest (recipes, stars, tags, notes, "
                             "lineage) in one zip")
    export.add_argument("ids", nargs="+")
    export.add_argument("--out", required=True)
    imp = gsub.add_parser("import", help="add the clips of an exported zip (clips already here are skipped)")
    imp.add_argument("file")
    for leaf in (lst, show, star, tag, note, delete, export, imp):
        leaf.add_argument("--data-dir", default=None)

    share = sub.add_parser("share", help="review links: some clips, read-only, for people without a login")
    ssub = share.add_subparsers(dest="share_command", required=True, parser_class=OneLineParser)
    s_make = ssub.add_parser("create", help="a link to a clip, a comparison, a sweep or a batch")
    what = s_make.add_mutually_exclusive_group(required=True)
    what.add_argument("--clip", metavar="ID", help="one clip")
    what.add_argument("--compare", metavar="ID,ID,...", help="2 to 9 clips, side by side in lock-step")
    what.add_argument("--sweep", metavar="ID", help="every clip of a sweep")
    what.add_argument("--batch", metavar="ID", help="every clip of a batch (one request's seeds)")
    s_make.add_argument("--expires", default=None, metavar="SPAN",
                        help="7d, 12h or 30m (default: the link works until revoked)")
    s_make.add_argument("--no-comments", action="store_true", help="reviewers may vote but not comment")
    s_make.add_argument("--base-url", default=None, help="the studio's address in the printed URL (default: "
                        "STUDIO_PUBLIC_URL, else http://127.0.0.1:7860)")
    s_make.add_argument("--json", action="store_true", help='print {"url", "token", "expires"}')
    s_list = ssub.add_parser("list", help="every review link, newest first")
    s_list.add_argument("--base-url", default=None)
    s_list.add_argument("--json", action="store_true")
    s_rev = ssub.add_parser("revoke", help="close a link for good (it answers 404 from then on)")
    s_rev.add_argument("token", help="the link's token (or its whole URL)")
    for leaf in (s_make, s_list, s_rev):
        leaf.add_argument("--data-dir", default=None)

    users = sub.add_parser("users", help="accounts for `studio serve --auth`")
    usub = users.add_subparsers(dest="users_command", required=True, parser_class=OneLineParser)
    u_add = usub.add_parser("add", help="add a user; the password is read from standard input (asked twice on a terminal)")
    u_add.add_argument("name")
    u_add.add_argument("--role", default="member", choices=["admin", "member", "viewer"])
    u_list = usub.add_parser("list", help="users and roles")
    u_rm = usub.add_parser("remove", help="remove a user (their clips stay)")
    u_rm.add_argument("name")
    u_pw = usub.add_parser("passwd", help="set a user's password (from standard input, or asked twice)")
    u_pw.add_argument("name")
    for leaf in (u_add, u_list, u_rm, u_pw):
        leaf.add_argument("--data-dir", default=None)

    ip = sub.add_parser("interpolate", help="2x or 4x a gallery clip's frame rate by optical flow or RIFE, as a new clip")
    ip.add_argument("--clip", required=True, help="the clip's id (or the 8 characters the page shows)")
    ip.add_argument("--factor", type=int, choices=INTERPOLATION_FACTORS, default=2, help="2 or 4 (default 2)")
    ip.add_argument("--method", choices=INTERPOLATION_METHODS, default=None,
                    help="optical flow (dis-flow, farneback) or rife (RIFE 4.6, weights from STUDIO_RIFE_WEIGHTS, "
                    "else <data dir>/models/rife/flownet.pkl; never downloaded). Default: rife where that file "
                    "exists, else dis-flow")
    ip.add_argument("--json", action="store_true", help="print the new clip's object (as `gallery show --json`)")
    ip.add_argument("--data-dir", default=None)

    rec = sub.add_parser("recall", help="print the recipe an mp4 made by this studio carries")
    rec.add_argument("file")
    rec.add_argument("--json", action="store_true")

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
        loras=tuple(parse_lora(x) for x in args.lora),
    )
    if args.model:
        fields["model_id"] = args.model
    media = {"image": args.image, "video": args.video, "mask": args.mask}
    taken = FROM_CLIP.get(args.mode) if args.clip else None
    if args.clip and taken is None:
        raise RequestError("clip", f"--clip is not used by --mode {args.mode}")
    if args.frame is not None and not args.clip:
        raise RequestError("frame", "--frame picks a frame of --clip")
    for name in cls.media_fields:
        if name == taken:
            if media[name]:
                raise RequestError(name, f"give --clip or --{name}, not both")
            fields[name] = "-"  # replaced by the clip's video or frame
            continue
        if not media[name]:
            hint = " (or --clip ID)" if name in ("image", "video") else ""
            raise RequestError(name, f"--{name} is required for --mode {args.mode}{hint}")
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


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from studio.settings import Settings

    return Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None,
                             device=getattr(args, "device", None), torch_threads=getattr(args, "threads", None))


def _error(message: object) -> None:
    print(f"studio: error: {message}", file=sys.stderr)


def _with_transformer_file(model: str | None, file: str, data_dir: Path) -> str:
    """`<model>@<file name>` for --transformer-file; a file outside the GGUF folder gets a link there (the
    studio opens GGUF files only from that folder, so the UI lists it and a recall finds it)."""
    from studio.wiring import gguf_dir

    if not model:
        raise RequestError("transformer_file", "--transformer-file needs --model: the catalog model whose "
                           "transformer the file holds (e.g. --model wan2.1-t2v-1.3b)")
    folder = gguf_dir(data_dir)
    given = Path(file).expanduser()
    if not given.name.endswith(".gguf"):
        raise RequestError("transformer_file", f"{file} is not a .gguf file")
    inside = folder / given.name
    if given.parent == Path(".") and not given.exists() and inside.is_file():
        return f"{model}@{given.name}"  # a name in the folder
    if not given.is_file():
        raise RequestError("transformer_file", f"no file {given}")
    if inside.exists() or inside.is_symlink():
        if not inside.exists() or not os.path.samefile(inside, given):
            raise RequestError("transformer_file", f"another {given.name} is already in the GGUF folder {folder}; "
                               "rename one of them")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        inside.symlink_to(given.resolve())
        print(f"studio: linked {given.resolve()} into the GGUF folder {folder}", file=sys.stderr)
    return f"{model}@{given.name}"


def cmd_generate(args: argparse.Namespace) -> int:
    from studio.wiring import build_studio

    try:
        request = _request_from_args(args)
        sweep = SweepRequest(request, args.seeds, tuple(parse_axis(v) for v in args.vary))
        sweep.validate()
    except RequestError as e:
        _error(e)
        return EXIT_BAD_ARGS
    if args.out:  # refuse an unwritable --out before generating anything
        target = Path(args.out).expanduser()
        folder = target if (target.is_dir() or args.out.endswith("/")) else target.parent
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK):
            _error(f"out: cannot write to {folder} ({probe} is {'not a folder' if not probe.is_dir() else 'read-only'})")
            return EXIT_BAD_ARGS
    settings = _settings(args)
    if args.transformer_file:
        try:
            model_id = _with_transformer_file(request.model_id if args.model else None, args.transformer_file,
                                              settings.data_dir)
        except RequestError as e:
            _error(e)
            return EXIT_BAD_ARGS
        request = dataclasses.replace(request, model_id=model_id)
        sweep = SweepRequest(request, sweep.seeds, sweep.axes)
    built = build_studio(settings, holder="studio generate")  # DataDirError: one line, from main()
    studio = built.facade
    try:
        try:
            if args.clip:
                args.clip = studio.resolve_clip_id(args.clip) or args.clip
                request = studio.from_clip(request, args.clip, args.frame)
                sweep = SweepRequest(request, sweep.seeds, sweep.axes)
            submission = studio.submit_sweep(sweep, parent_id=args.clip, local_paths=True)  # the owner's machine
        except RequestError as e:
            _error(e)
            return EXIT_BAD_ARGS
        statuses = studio.wait(submission.job_ids)
        failed = [s for s in statuses if s.status != "done"]
        clips = [studio.clip(s.clip_id) for s in statuses if s.status == "done"]
        copies = _copy_out(args.out, clips, [c.seed for c in clips]) if args.out and clips else []
        said = studio.prompt_warnings(clips[0].model_id, clips[0].prompt) if clips else []
        if args.json:
            rows = [clip_json(c, warnings=said, **({"out": str(copies[i])} if copies else {}))
                    for i, c in enumerate(clips)]
            print(json.dumps(rows, indent=2))
        else:
            for w in said:  # words the model did not follow: on stderr, the paths stay alone on stdout
                print(f"warning: {w}", file=sys.stderr)
            for i, c in enumerate(clips):
                print(copies[i] if copies else c.video)
        for s in failed:
            _error(f"job {s.job_id} {s.status}: {s.error or ''}".rstrip(": "))
        return EXIT_FAILED if failed else 0
    finally:
        built.close()


def cmd_loras(args: argparse.Namespace) -> int:
    from studio.wiring import build_studio

    built = build_studio(_settings(args), _no_models(), start=False)
    try:
        rows = built.facade.loras()
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no LoRAs in {built.facade.lora_folder}", file=sys.stderr)
        else:
            for r in rows:
                rank = r.get("rank") if r.get("rank") is not None else "?"
                print(f"{r['name']:40} {r.get('family') or '?':10} rank {rank:<4} {r['size'] / 1e6:.1f} MB"
                      + (f"  ({r['error']})" if r.get("error") else ""))
        return 0
    finally:
        built.close()


def cmd_interpolate(args: argparse.Namespace) -> int:
    from studio.wiring import build_studio

    built = build_studio(_settings(args), holder="studio interpolate")  # the whole registry: queued jobs may run
    studio = built.facade
    try:
        try:
            submission = studio.interpolate(args.clip, args.factor, method=args.method)
        except RequestError as e:
            _error(e)
            return EXIT_BAD_ARGS
        [status] = studio.wait(submission.job_ids)
        if status.status != "done":
            _error(f"job {status.job_id} {status.status}: {status.error or ''}".rstrip(": "))
            return EXIT_FAILED
        view = studio.clip(status.clip_id)
        if args.json:
            print(json.dumps(_shown(studio, view), indent=2, ensure_ascii=False))  # as `gallery show --json`
        else:
            print(view.video)
        return 0
    finally:
        built.close()


def cmd_gallery(args: argparse.Namespace) -> int:
    from studio.facade import GalleryQuery, QueryError
    from studio.wiring import build_studio

    built = build_studio(_settings(args), _no_models(), start=False)
    studio = built.facade
    c = args.gallery_command
    try:
        if c == "list":
            query = GalleryQuery(text=args.search, mode=args.mode, model_id=args.model,
                                 starred=True if args.starred else None, tag=args.tag, sweep_id=args.sweep,
                                 sort=args.sort, limit=args.limit)
            views, _ = studio.search(query)
            if args.json:
                print(json.dumps([clip_json(v) for v in views], indent=2))
            else:
                for v in views:
                    star = "*" if v.starred else " "
                    print(f"{v.id}  {star} {v.mode:7} seed {v.seed:<10} {v.created_at}  {v.prompt[:60]}")
            return 0
        if c == "import":
            added, skipped = studio.import_zip(Path(args.file).expanduser())
            print(f"imported {added} clip(s), {skipped} already here")
            return 0
        if c == "export":
            out = studio.export_zip(args.ids, Path(args.out).expanduser())
            print(out)
            return 0
        view = studio.clip(studio.resolve_clip_id(args.id) or args.id)
        if view is None:
            _error(f"no clip {args.id!r} in {built.settings.data_dir}")
            return EXIT_BAD_ARGS
        if c == "show":
            shown = _shown(studio, view)
            if args.json:
                print(json.dumps(shown, indent=2, ensure_ascii=False))
            else:
                for key, value in shown.items():
                    if key not in ("comments", "voters"):
                        print(f"{key:16} {value}")
                for comment in shown["comments"]:
                    at = f" at {comment['at']:.2f} s" if comment["at"] is not None else ""
                    done = " [resolved]" if comment["resolved"] else ""
                    print(f"comment          {comment['author']}{at}{done}: {comment['text']}")
            return 0
        if c == "star":
            studio.star(view.id, not args.off)
        elif c == "tag":
            studio.tag(view.id, args.tags, remove=args.remove)
        elif c == "note":
            studio.note(view.id, args.text)
        elif c == "delete":
            studio.delete(view.id)
            print(f"deleted {view.id}")
            return 0
        print(view.id)
        return 0
    except (QueryError, RequestError, ValueError) as e:
        _error(e)
        return EXIT_BAD_ARGS
    finally:
        built.close()


def _review_json(review, base: str) -> dict:  # type: ignore[no-untyped-def]
    return {"url": f"{base}{review.path}", "token": review.token, "expires": review.expires_at, "kind": review.kind,
            "subject": review.subject, "clips": list(review.clip_ids), "author": review.author,
            "created_at": review.created_at, "comments": review.comments_allowed, "state": review.state,
            "revoked_at": review.revoked_at}


def cmd_share(args: argparse.Namespace) -> int:
    from studio.facade import NotAllowed, QueryError, ReviewNotFound
    from studio.wiring import build_studio

    settings = _settings(args)
    base = (getattr(args, "base_url", None) or settings.base_url).rstrip("/")
    built = build_studio(settings, _no_models(), start=False)
    studio = built.facade
    try:
        c = args.share_command
        if c == "create":
            if args.clip:
                review = studio.share("clip", [args.clip], expires=args.expires, comments=not args.no_comments)
            elif args.compare:
                ids = [i.strip() for i in args.compare.split(",") if i.strip()]
                review = studio.share("compare", ids, expires=args.expires, comments=not args.no_comments)
            else:
                kind = "sweep" if args.sweep else "batch"
                review = studio.share(kind, subject=args.sweep or args.batch, expires=args.expires,
                                      comments=not args.no_comments)
            if args.json:
                print(json.dumps({"url": f"{base}{review.path}", "token": review.token, "expires": review.expires_at}))
            else:
                print(f"{base}{review.path}")
            return 0
        if c == "list":
            rows = [_review_json(r, base) for r in studio.reviews()]
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    print(f"{r['token']}  {r['state']:7} {r['kind']:7} {len(r['clips']):2} clip(s)  "
                          f"made {r['created_at']}  expires {r['expires'] or 'never'}")
            return 0
        review = studio.revoke_review(args.token)
        print(f"revoked {review.token}")
        return 0
    except ReviewNotFound:
        _error("no such review link (or its token was altered)")
        return EXIT_BAD_ARGS
    except (QueryError, NotAllowed) as e:
        _error(e)
        return EXIT_BAD_ARGS
    finally:
        built.close()


def _count_users(settings) -> int:  # type: ignore[no-untyped-def]
    from studio.wiring import build_studio

    built = build_studio(settings, _no_models(), start=False)
    try:
        return built.accounts.count()
    finally:
        built.close()


def _read_password(prompt_twice: bool) -> str:
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if prompt_twice and getpass.getpass("again: ") != first:
        raise RequestError("password", "the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from studio.facade import QueryError
    from studio.wiring import build_studio

    built = build_studio(_settings(args), _no_models(), start=False)
    accounts = built.accounts
    try:
        c = args.users_command
        if c == "list":
            for account in accounts.list():
                print(f"{account.name}\t{account.role}")
            return 0
        if c == "remove":
            if not accounts.remove(args.name):
                _error(f"no user {args.name!r}")
                return EXIT_BAD_ARGS
            print(f"removed {args.name}")
            return 0
        password = _read_password(prompt_twice=True)
        if c == "add":
            accounts.add(args.name, password, args.role)
            print(f"added {args.name} ({args.role})")
        else:
            accounts.set_password(args.name, password)
            print(f"password of {args.name} changed")
        return 0
    except (QueryError, RequestError) as e:
        _error(e)
        return EXIT_BAD_ARGS
    finally:
        built.close()


def cmd_recall(args: argparse.Namespace) -> int:
    from studio.facade import read_recipe

    try:
        request, clip_id = read_recipe(Path(args.file).expanduser())
    except RequestError as e:
        _error(e)
        return EXIT_BAD_ARGS
    recipe = recipe_json(request, clip_id)
    if args.json:
        print(json.dumps(recipe, indent=2))
    else:
        for key, value in recipe.items():
            if key != "params":
                print(f"{key:16} {value}")
    return 0


def _shown(studio, view) -> dict:  # type: ignore[no-untyped-def]
    """A clip as `gallery show --json` prints it: its JSON, children, review comments and voters."""
    return clip_json(view, children=[k.id for k in studio.children(view.id)],
                     comments=[comment.to_json() for comment in studio.clip_comments(view.id)],
                     voters=[{"reviewer": v.reviewer, "signed_in": v.signed_in, "created_at": v.created_at}
                             for v in studio.clip_votes(view.id)])


def cmd_serve(args: argparse.Namespace) -> int:
    from studio.settings import Settings
    from studio.wiring import launch

    settings = Settings.from_env(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        host=args.host, port=args.port, share=args.share or None,
        device=args.device, torch_threads=args.threads, auth=args.auth,
        executor=args.executor, ray_address=args.ray_address, ray_workers=args.ray_workers,
    )
    if settings.executor not in ("local", "ray"):
        _error(f"STUDIO_EXECUTOR={settings.executor!r}: pick local or ray")
        return EXIT_BAD_ARGS
    if settings.ray_workers is not None and settings.ray_workers < 1:
        _error(f"--ray-workers {settings.ray_workers}: at least 1")
        return EXIT_BAD_ARGS
    if settings.auth:
        users = _count_users(settings)
        if users == 0:
            _error(f"--auth: {settings.data_dir} has no users yet; add one with: studio users add NAME --role admin")
            return EXIT_BAD_ARGS
    exposed = exposure(settings)
    anonymous_ok = args.allow_anonymous or os.environ.get("STUDIO_ALLOW_ANONYMOUS", "") in ("1", "true")
    if exposed and not settings.accounts_on and not anonymous_ok:
        if os.environ.get("SYSTEM") == "spaces":
            _error("this Space has no sign-in: put `hf_oauth: true` in the README's metadata (Sign in with Hugging "
                   "Face), or set the Space variable STUDIO_ALLOW_ANONYMOUS=1 to let anyone generate and delete")
        else:
            _error(f"{exposed} would open the studio to anyone who reaches it, with no login: every clip could be "
                   "seen and deleted; add --auth (with users from `studio users add`), or --allow-anonymous to do "
                   "it anyway")
        return EXIT_BAD_ARGS
    launch(settings)  # DataDirError (busy, not writable): one line, from main()
    return 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure(settings) -> str | None:  # type: ignore[no-untyped-def]
    """What in the settings reaches beyond this machine: --share, or a host other than loopback."""
    if settings.share:
        return "--share"
    if settings.host not in LOOPBACK and not settings.host.startswith("127."):
        return f"--host {settings.host}"
    return None


def _token_as_argument(argv: list[str]) -> list[str]:
    """`share revoke -AbC.xyz`: a token made before ids avoided a leading `-` would read as an unknown option; put it
    after `--` so argparse takes it as the token. Other commands' arguments are left as they are."""
    if argv[:2] != ["share", "revoke"] or "--" in argv:
        return argv
    rest, tokens, after_data_dir = [], [], False
    for arg in argv[2:]:  # a token is `<id>.<signature>`; no option has a dot (--data-dir's value may)
        is_token = not after_data_dir and arg.startswith("-") and "." in arg and not arg.startswith("--data-dir")
        (tokens if is_token else rest).append(arg)
        after_data_dir = arg == "--data-dir"
    return argv[:2] + rest + (["--", *tokens] if tokens else [])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train-embedded", "eval-embedded"):  # their own parsers read every flag, --help too
        if argv[0] == "train-embedded":
            from pipelines.embedded.train import main as train_main

            return train_main(argv[1:]) or 0
        from pipelines.embedded.evaluate import main as eval_main

        return eval_main(argv[1:]) or 0
    args = build_parser().parse_args(_token_as_argument(argv))
    from studio.wiring import DataDirError, ExecutorUnavailable

    commands = {"loras": cmd_loras, "generate": cmd_generate, "serve": cmd_serve, "gallery": cmd_gallery, "recall": cmd_recall,
                "users": cmd_users, "share": cmd_share, "interpolate": cmd_interpolate}
    try:
        return commands[args.command](args)
    except (DataDirError, ExecutorUnavailable) as e:  # a data dir that is not a folder, read-only, full, or
        _error(e)  # busy; Ray missing or its cluster out of reach: one line, exit 2
        return EXIT_BAD_ARGS


if __name__ == "__main__":
    sys.exit(main())
