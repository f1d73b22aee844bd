"""The one way to generate: the UI, the CLI and the API all submit requests here.

submit():       validate, pin seeds, copy inputs into the data dir, persist queued jobs -> job ids.
submit_sweep(): the same for every cell of a sweep (axes x seeds), all validated before any is queued.
worker:         load backend, decode inputs, generate with progress + cancel, write files, then
                commit the gallery row; if either fails, neither remains. The seeds of one cell (one
                batch) go through the network together when the backend can batch (`generate_batch`).
executor:       where "load backend + generate" happens. None (the `local` executor): in this process, on one
                worker thread, as above. A remote one (studio.executors.RayExecutor): one dispatch thread per
                worker of its pool, each job on its own (no batching); the frames come back here and are saved
                by saver threads while the worker takes the next job. A job whose worker died is re-queued once.
submit_interpolation(): a job kind with no model behind it (mode "interpolate"): the worker reads a gallery
                clip, makes its frames 2x or 4x by optical flow or RIFE (studio.media.interpolate) and saves the
                result as a new clip, child of the source, through the same files-then-row path. It waits in
                the same queue (round robin over authors), reports progress per frame pair and can be cancelled.
shared queue:   (#17, off unless `shared_queue` names this front end; storage/claims.py has the design) the
                queue is the database's: workers claim jobs with claim_next (FOR UPDATE SKIP LOCKED, round robin
                over authors across front ends), a renewer thread keeps their leases, learns of cancels and lost
                jobs, reclaims lapsed leases and refreshes the state of jobs known here that run elsewhere; a
                job's end is written only under its claim (check_claim). Without it nothing above changes.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import secrets
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from pipelines.contract import (
    MAX_SEED,
    TERMINAL,
    Cancelled,
    GenerationRequest,
    JobStatus,
    ModelLoadError,
    ModelRegistry,
    ModelSpec,
    OutOfMemory,
    RequestError,
    SweepRequest,
    UnknownModel,
    is_out_of_memory,
    request_from_params,
)
from pipelines.contract.sweeps import AXES, MAX_SEEDS
from studio.executors import Generated, WorkerLost, safe_manifest
from studio.loras import LoraLibrary
from studio.media import MediaError, MediaService
from studio.media.interpolate import InterpolationRequest, check_output
from studio.media.video import read_video
from storage.claims import DEFAULT_LEASE_S, LostClaim, QueueRepository
from storage.models import Clip, Job, utcnow
from storage.repositories import GalleryRepository, JobRepository
from storage.files import FileStore
from storage.lease import DataDirError
from storage.space import DiskSpace, is_disk_full

log = logging.getLogger(__name__)

MAX_SEEDS_PER_BATCH = MAX_SEEDS
# Finished jobs keep a small in-memory state (status, clip id, error) for pollers; beyond this many the
# oldest is dropped and status() reads the database instead. Previews are dropped at once on finish.
MAX_ATTEMPTS = 2  # a job interrupted by a crash runs once more, then fails with a message
WORKER_ATTEMPTS = 2  # a job whose executor worker died runs once more on another, then fails with the reason
MAX_QUEUED_PER_USER = 128  # clips waiting or running per author (two full sweeps)
MAX_QUEUED = 1024  # clips waiting or running in all
_NOBODY = object()
MAX_FINISHED_STATES = 256


@dataclass(frozen=True)
class Submission:
    """One batch: the seeds of one request (or of one sweep cell), a job each."""

    batch_id: str
    job_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    axes: dict = field(default_factory=dict)  # the cell's axis values in a sweep ({} outside one)


@dataclass(frozen=True)
class SweepSubmission:
    sweep_id: str
    cells: tuple[Submission, ...]  # in queue order (the model axis outermost)

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(j for cell in self.cells for j in cell.job_ids)


@dataclass
class JobState:
    """Live, in-memory view of a job; the database holds the durable part."""

    job_id: str
    batch_id: str = ""
    author: str | None = None
    status: str = "queued"
    step: int = 0
    total: int = 0
    started: float | None = None
    last_step_at: float = 0.0
    preview: object | None = None  # (F, H, W, 3) uint8 ndarray, newest preview
    preview_version: int = 0
    clip_id: str | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the mean pace of the steps so far (loading included in the first step)."""
        if not self.step or not self.total or self.started is None:
            return None
        per_step = (self.last_step_at - self.started) / self.step
        return max(0.0, per_step * (self.total - self.step))


class JobService:
    def __init__(
        self,
        registry: ModelRegistry,
        session_factory: Callable,
        files: FileStore,
        media: MediaService,
        *,
        library_versions: Callable[[], dict] | None = None,
        max_queued_per_user: int = MAX_QUEUED_PER_USER,
        max_queued: int = MAX_QUEUED,
        runner: Callable | None = None,
        loras: LoraLibrary | None = None,
        executor=None,  # None: generate in this process (the `local` executor); a RayExecutor: on its workers
        shared_queue: str | None = None,  # this front end's name: take jobs from the database's shared queue
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = 1.0,  # shared queue: how often to look for jobs other front ends queued, renew, reclaim
    ):
        self.registry = registry
        self.loras = loras or LoraLibrary(files.root / "loras")
        self._session_factory = session_factory
        self.files = files
        self.media = media
        self._library_versions = library_versions or (lambda: {})
        self.max_queued_per_user = max_queued_per_user
        self.max_queued = max_queued
        # runner(fn, request, *args): how a generation is called; ZeroGPU's `spaces.GPU` on such a Space
        self._runner = runner or (lambda fn, request, *args: fn(*args))
        self._last_author: object = _NOBODY  # whose job ran last: the next one goes to someone else
        self.space = DiskSpace(files.root)
        # finished jobs whose end could not be written (a full disk): written as soon as there is room
        self._unrecorded: dict[str, tuple[str, str | None]] = {}
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._order: list[str] = []  # job ids waiting or running, in order
        self._states: dict[str, JobState] = {}
        self._finished: deque[str] = deque()  # ids of finished jobs whose state is still kept, oldest first
        self._lock = threading.Lock()
        self._dispatch = threading.Lock()  # picking the next job and marking it running: one thread at a time
        self._executor = executor
        # the shared queue (storage/claims.py; off by default): jobs are claimed from the database by any of
        # several front ends; `_mine` are the ones this front end holds, `_lost` those reclaimed from under it
        self._shared_name = shared_queue
        self._front_end: str | None = None
        self._lease_s, self._poll_s = lease_s, poll_s
        self._mine: set[str] = set()
        self._lost: set[str] = set()
        self._handing_back: set[str] = set()  # stop(): running jobs that go back to the shared queue
        self._renewer: threading.Thread | None = None
        self._stopping = threading.Event()  # the renewer's end
        self._draining = threading.Event()  # stop(): claim nothing more
        self._worker: threading.Thread | None = None
        self._workers: list[threading.Thread] = []  # the local executor: one; a remote one: one per worker
        # a remote executor's clips are saved by these threads, so that a dispatch thread hands its worker the
        # next job at once; at most one clip per dispatch thread waits for its files (the workers then wait)
        self._savers: ThreadPoolExecutor | None = None
        self._saving = threading.Semaphore(1)
        self._generated: set[str] = set()  # jobs whose frames are made and wait for a saver: stop() saves them
        self._sized_at = 0.0  # when the executor was last asked how many jobs it can run at once

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker; re-queue jobs a previous run left queued or running."""
        if self._worker is not None:
            return
        self._draining.clear()
        self._stopping.clear()
        self._apply_journal()
        if self._shared_name is not None:
            self._start_shared()
        else:
            self._requeue_leftovers()
        self.space.hold()
        if (short := self.space.shortage()) is not None:
            log.warning("%s", short[0].upper() + short[1:])
        if self._executor is not None:
            self._executor.start()  # ExecutorUnavailable: Ray missing, its cluster out of reach
        count = self._executor.concurrency() if self._executor is not None else 1
        if self._executor is not None:
            self._savers = ThreadPoolExecutor(max_workers=count, thread_name_prefix="studio-saver")
            self._saving = threading.Semaphore(count)
        self._workers = [threading.Thread(target=self._run_worker, name=f"studio-worker-{i}" if i else "studio-worker",
                                          daemon=True) for i in range(count)]
        self._worker = self._workers[0]
        for thread in self._workers:
            thread.start()
        self._sized_at = time.monotonic()
        if self._front_end is not None:
            self._renewer = threading.Thread(target=self._renew_loop, name="studio-renewer", daemon=True)
            self._renewer.start()
            for _ in self._workers:
                self._queue.put("")  # jobs may be waiting already

    def _start_shared(self) -> None:
        """The shared queue: register this front end and reclaim what dead ones left; the jobs stay in the
        database (the workers claim them), and running jobs of live front ends are theirs."""
        with self._session_factory() as session, session.begin():
            queue_repo = QueueRepository(session)
            self._log_reclaimed(queue_repo.reclaim_expired(max_attempts=MAX_ATTEMPTS))
            self._front_end = queue_repo.register(self._shared_name or "studio").id
        log.info("front end %s (%s) takes jobs from the shared queue", self._front_end, self._shared_name)

    @staticmethod
    def _log_reclaimed(reclaimed) -> None:  # type: ignore[no-untyped-def]
        for job_id in reclaimed.requeued:
            log.warning("job %s: its front end stopped answering while it ran; re-queued", job_id)
        for job_id in reclaimed.failed:
            log.warning("job %s: its front end stopped answering while it ran, again; failed", job_id)

    def _renew_loop(self) -> None:
        interval = min(self._poll_s, self._lease_s / 4)
        while not self._stopping.wait(interval):
            try:
                self._renew_once()
            except Exception:  # the database out of reach for a moment: the leases have room for it
                log.exception("could not renew the leases of front end %s", self._front_end)

    def _renew_once(self) -> None:
        """Renew this front end's leases (with progress), learn of cancels and lost jobs, reclaim expired
        leases, and refresh the state of jobs known here that run (or wait) elsewhere."""
        with self._lock:
            mine = {j: (self._states[j].step, self._states[j].total) for j in self._mine if j in self._states}
            others = [j for j, st in self._states.items() if j not in self._mine and not st.finished.is_set()]
        with self._session_factory() as session, session.begin():
            queue_repo = QueueRepository(session)
            renewal = queue_repo.renew(self._front_end or "", mine, self._lease_s, progress=mine)
            reclaimed = queue_repo.reclaim_expired(max_attempts=MAX_ATTEMPTS)
            rows = queue_repo.states(others)
        self._log_reclaimed(reclaimed)
        ended = []
        with self._lock:
            for job_id in renewal.cancel:
                if (st := self._states.get(job_id)) is not None:
                    st.cancel.set()
            for job_id in renewal.lost:
                if job_id in self._mine:
                    log.warning("job %s: lost its lease (another front end reclaimed it); abandoned here", job_id)
                    self._lost.add(job_id)
                    if (st := self._states.get(job_id)) is not None:
                        st.cancel.set()
            for job_id, status, step, total, clip_id, error in rows:
                st = self._states.get(job_id)
                if st is None or job_id in self._mine or st.finished.is_set():
                    continue
                st.status, st.step, st.total = status, step or 0, total or 0
                if status in TERMINAL:
                    ended.append((job_id, status, clip_id, error))
        for job_id, status, clip_id, error in ended:
            self._finish(job_id, status, clip_id=clip_id, error=error, recorded=True)
        if reclaimed.requeued:
            for _ in self._workers:
                self._queue.put("")

    def _requeue_leftovers(self) -> None:
        """The single-front-end path: jobs a previous run left running are re-queued (or failed after
        MAX_ATTEMPTS), and every queued job goes into the in-memory queue."""
        with self._session_factory() as session, session.begin():
            repo = JobRepository(session)
            interrupted = repo.list_by_status("running")  # the studio stopped (or was killed) while they ran
            leftover = []
            for job in interrupted:
                if (job.attempts or 0) >= MAX_ATTEMPTS:
                    job.status = "failed"
                    job.error = (f"interrupted {job.attempts} times (the studio stopped while it ran); "
                                 "not run again")
                    job.finished_at = utcnow()
                    log.warning("job %s: %s", job.id, job.error)
                    continue
                log.warning("job %s was interrupted while running; it runs once more", job.id)
                job.status = "queued"
                job.started_at = None
                leftover.append(job)
            leftover += repo.list_by_status("queued")
            leftover.sort(key=lambda j: j.created_at)
            ids = [(j.id, j.batch_id, j.author) for j in leftover]
        for job_id, batch_id, author in ids:
            self._enqueue(job_id, batch_id, author)

    def _grow(self) -> None:
        """A remote executor's cluster may have grown (nodes added): one more dispatch thread per worker it
        can hold now. Asked at most every 5 s, when a job is queued; threads are never taken away (idle ones
        cost nothing, and the pool itself stops idle workers)."""
        if self._executor is None or not self._workers or time.monotonic() - self._sized_at < 5.0:
            return
        self._sized_at = time.monotonic()
        try:
            want = self._executor.concurrency()
        except Exception as e:  # the cluster out of reach for a moment: the jobs will say so if it lasts
            log.warning("could not ask the executor how many jobs it can run: %s", e)
            return
        with self._lock:
            new = [threading.Thread(target=self._run_worker, name=f"studio-worker-{len(self._workers) + i}",
                                    daemon=True) for i in range(want - len(self._workers))]
            self._workers += new
        for thread in new:
            self._saving.release()  # one more clip may wait for its files
            thread.start()
        if new:
            log.info("the executor can run %d jobs at once now: %d dispatch threads", want, want)

    @property
    def executor_name(self) -> str:
        return "local" if self._executor is None else self._executor.name

    def stop(self, timeout: float = 30.0) -> None:
        if self._worker is None:
            return
        self._draining.set()
        with self._lock:
            for state in self._states.values():
                if state.status == "running" and state.job_id not in self._generated:
                    if self._front_end is not None and state.job_id in self._mine and not state.cancel.is_set():
                        self._handing_back.add(state.job_id)  # another front end runs it (see _finish)
                    state.cancel.set()
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._worker = None
        self._workers = []
        if self._savers is not None:
            self._savers.shutdown(wait=True)  # the clips already generated are saved (or, cancelled, dropped)
            self._savers = None
        if self._executor is not None:
            self._executor.close()
        self._record_pending()
        if self._renewer is not None:
            self._stopping.set()
            self._renewer.join(timeout)
            self._renewer = None
            with self._session_factory() as session, session.begin():
                QueueRepository(session).stopped(self._front_end or "")

    def warm_up(self) -> None:
        """Load the default model (torch's import included) in the background, so that a served studio's
        first clip does not wait for it; a model that cannot load is left to its first job to report."""
        def load() -> None:
            try:
                if self._executor is not None:  # the workers load it, each in its own process
                    spec = self.registry.spec(self.registry.default_id)
                    self._executor.warm_up(spec.id, spec.profiles[0] if spec.profiles else None)
                    return
                self.registry.load(self.registry.default_id)
            except Exception as e:  # not installed, say: its first job gives the whole message
                log.info("did not load the default model ahead of time: %s", str(e).splitlines()[0][:200])

        threading.Thread(target=load, name="studio-warm-up", daemon=True).start()

    # ---- submission -----------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, seeds: int = 1, *, parent_id: str | None = None,
               author: str | None = None) -> Submission:
        """Validate, pin the seeds, store the inputs and queue one job per seed. `parent_id`: the gallery
        clip this request branches from (its lineage; the inputs already name what was taken from it)."""
        return self._submit(SweepRequest(request, seeds), sweep_ids=False, parent_id=parent_id, author=author).cells[0]

    def submit_sweep(self, sweep: SweepRequest, *, parent_id: str | None = None,
                     author: str | None = None) -> SweepSubmission:
        """Every cell of the sweep gets the same seeds; nothing is queued unless every cell is valid."""
        return self._submit(sweep, sweep_ids=True, parent_id=parent_id, author=author)

    def submit_interpolation(self, request: InterpolationRequest, *, author: str | None = None) -> Submission:
        """Queue a job that makes `request.factor` times the frame rate of a gallery clip. Refused here
        (RequestError) when the clip is missing or the result would pass the media limits."""
        request.validate()
        with self._session_factory() as session:
            source = GalleryRepository(session).get(request.source)
            if source is None:
                raise RequestError("clip", f"no clip {request.source!r} in the gallery")
            check_output(source.frames, source.width, source.height, source.fps, request.factor, self.media.limits)
            seed, model_id = source.seed, source.model_id
        self._check_room(author, 1)
        job = Job(id=uuid.uuid4().hex, batch_id=uuid.uuid4().hex, batch_index=0, status="queued", mode=request.mode,
                  model_id=model_id, params=request.to_params(), created_at=utcnow(), parent_id=request.source,
                  author=author)
        with self._session_factory() as session, session.begin():
            JobRepository(session).add(job)
        self._enqueue(job.id, job.batch_id, author)
        return Submission(job.batch_id, (job.id,), (seed,))

    def _submit(self, sweep: SweepRequest, *, sweep_ids: bool, parent_id: str | None,
                author: str | None = None) -> SweepSubmission:
        sweep.validate()
        request = sweep.request
        if not request.model_id:
            request = dataclasses.replace(request, model_id=self.registry.default_id)
            sweep = dataclasses.replace(sweep, request=request)
        seed = request.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
            raise RequestError("seed", f"{seed!r} is not an integer from 0 to {MAX_SEED}")
        base_seed = seed if seed is not None else secrets.randbelow(2**32)
        seeds = tuple(base_seed + i for i in range(sweep.seeds))
        if seeds[-1] > MAX_SEED:
            raise RequestError("seed", f"{base_seed} leaves no room for {sweep.seeds} consecutive seeds")
        cells = [(cell.axes, self._resolve(cell.request, base_seed, cell.axes)) for cell in sweep.cells()]
        self._check_room(author, len(cells) * len(seeds))
        stored = self.media.ingest(cells[0][1])  # copies inputs into the data dir, probes them: MediaError
        media_fields = {name: getattr(stored, name) for name in stored.media_fields}
        sweep_id = uuid.uuid4().hex if sweep_ids else None
        jobs, out = [], []
        for axes, resolved in cells:
            resolved = dataclasses.replace(resolved, **media_fields)
            batch_id = uuid.uuid4().hex
            cell_jobs = []
            for i, seed in enumerate(seeds):
                req = dataclasses.replace(resolved, seed=seed)
                cell_jobs.append(Job(
                    id=uuid.uuid4().hex, batch_id=batch_id, batch_index=i, status="queued", mode=req.mode,
                    model_id=req.model_id, params=req.to_params(), created_at=utcnow(), sweep_id=sweep_id,
                    axes={"seed": seed, **axes} if sweep_id else None, parent_id=parent_id, author=author,
                ))
            jobs += cell_jobs
            out.append(Submission(batch_id, tuple(j.id for j in cell_jobs), seeds, dict(axes)))
        with self._session_factory() as session, session.begin():
            repo = JobRepository(session)
            for job in jobs:
                repo.add(job)
        for job in jobs:
            self._enqueue(job.id, job.batch_id, job.author)
        return SweepSubmission(sweep_id or "", tuple(out))

    def _resolve(self, request: GenerationRequest, seed: int, axes: dict) -> GenerationRequest:
        """The request with the model's defaults filled in, validated; errors name the axis value if one caused it."""
        try:
            try:
                spec = self.registry.spec(request.model_id)
            except (UnknownModel, ModelLoadError) as e:
                raise RequestError("model_id", str(e)) from None
            missing = self.registry.missing(request.model_id)
            if missing:  # refuse before queueing: a job that can only fail would sit in the queue first
                raise RequestError("model_id", missing)
            resolved = request.resolve(spec, seed)
            resolved.validate(spec)
            return self._pin_transformer(self._pin_loras(resolved))
        except RequestError as e:
            culprit = next((name for name in axes if AXES[name][0] == e.field), None)
            if culprit is None:
                raise
            raise RequestError("vary", f"{culprit}={axes[culprit]!r}: {e}") from None

    def _pin_loras(self, request: GenerationRequest) -> GenerationRequest:
        """Each LoRA resolved to its file and sha256, and checked against the model (headers only), before queueing."""
        if not request.loras:
            return request
        pinned = tuple(self.loras.pin(ref) for ref in request.loras)
        for ref in pinned:
            why = self.registry.check_lora(request.model_id, ref.name, ref.path or ref.name)
            if why:
                raise RequestError("loras", why)
        return dataclasses.replace(request, loras=pinned)

    def _pin_transformer(self, request: GenerationRequest) -> GenerationRequest:
        """A model whose denoiser is one named file (a GGUF transformer) gets that file's sha256 in the request;
        a recalled request whose file changed since is refused, as a changed LoRA is (loading checks it again)."""
        try:
            digest = self.registry.weights_sha256(request.model_id)
        except OSError as e:
            raise RequestError("model_id", f"cannot read the transformer file of {request.model_id}: "
                                           f"{e.strerror or e}") from None
        if digest is None:
            if request.transformer_sha256 is not None:
                raise RequestError("transformer_sha256", f"model {request.model_id} has no transformer file to "
                                                         "check; leave transformer_sha256 empty")
            return request
        if request.transformer_sha256 is not None and request.transformer_sha256 != digest:
            name = request.model_id.rpartition("@")[2]
            raise RequestError("model_id", f"{name} has changed since the clip was made (sha256 {digest[:12]}, "
                                           f"the recipe has {request.transformer_sha256[:12]}); put the original "
                                           "file back")
        return dataclasses.replace(request, transformer_sha256=digest)

    def _enqueue(self, job_id: str, batch_id: str, author: str | None = None) -> None:
        with self._lock:
            if job_id in self._states:  # submitted before start(), which re-reads the queue from the database
                return
            self._states[job_id] = JobState(job_id, batch_id, author)
            self._order.append(job_id)
        self._queue.put(job_id)  # a wake-up: which job runs next is the scheduler's choice (_next_job)
        self._grow()

    def _check_room(self, author: str | None, adding: int) -> None:
        """Refuse a submission that would pass the per-user or the global cap on waiting clips (a shared
        queue: counted over every front end, from the database; two front ends submitting at the same moment
        may pass a cap by one submission each, which the caps, meant against floods, allow)."""
        if self._shared_name is not None:
            with self._session_factory() as session:
                counts = QueueRepository(session).waiting_counts()
            mine, total = counts.get(author, 0), sum(counts.values())
        else:
            with self._lock:
                waiting = [s for s in self._states.values() if s.status in ("queued", "running")]
            mine, total = sum(1 for s in waiting if s.author == author), len(waiting)
        who = author or "this studio"
        if mine + adding > self.max_queued_per_user:
            raise RequestError("seeds", f"{who} has {mine} clip(s) waiting and asks for {adding} more; the limit is "
                                        f"{self.max_queued_per_user} waiting per user: wait for some, or cancel them")
        if total + adding > self.max_queued:
            raise RequestError("seeds", f"the queue is full ({total} clips waiting, at most {self.max_queued}); "
                                        "try again when some have finished")

    def _next_job(self) -> str | None:
        """Round robin over authors: the oldest queued job of the author after the one served last, so
        one user's 64-clip sweep does not keep everyone else waiting."""
        with self._lock:
            queued = [j for j in self._order if (st := self._states.get(j)) is not None and st.status == "queued"]
            if not queued:
                return None
            authors: list = []
            for j in queued:
                a = self._states[j].author
                if a not in authors:
                    authors.append(a)
            ring = sorted(authors, key=lambda a: (a is None, a or ""))
            if self._last_author in ring:
                ring = ring[ring.index(self._last_author) + 1:] + ring[: ring.index(self._last_author) + 1]
            pick = ring[0]
            self._last_author = pick
            return next(j for j in queued if self._states[j].author == pick)

    # ---- observation and control ----------------------------------------------------------------
    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            state = self._states.get(job_id)
            if state is not None:
                pos = self._order.index(job_id) if job_id in self._order else None
                return JobStatus(
                    job_id, state.status, state.step, state.total, pos, state.eta_seconds,
                    state.clip_id, state.error, state.preview_version,
                )
        with self._session_factory() as session:
            job = JobRepository(session).get(job_id)
            if job is None:
                raise KeyError(f"no job {job_id!r}")
            return JobStatus(job.id, job.status, 0, 0, None, None, job.clip_id, job.error, 0)

    def preview(self, job_id: str):
        with self._lock:
            state = self._states.get(job_id)
            return None if state is None else state.preview

    def wait(self, job_ids: Iterable[str], timeout: float | None = None) -> list[JobStatus]:
        deadline = None if timeout is None else time.monotonic() + timeout
        for job_id in job_ids:
            with self._lock:
                state = self._states.get(job_id)
            if state is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not state.finished.wait(left):
                    raise TimeoutError(f"job {job_id} did not finish in time")
        return [self.status(j) for j in job_ids]

    def cancel(self, job_id: str) -> None:
        """A queued job is cancelled at once; a running one stops within one denoising step (on another front
        end of a shared queue: within one renew period)."""
        if self._shared_name is not None:
            with self._session_factory() as session, session.begin():
                outcome = QueueRepository(session).request_cancel(job_id)
            with self._lock:
                state = self._states.get(job_id)
                if state is not None:
                    state.cancel.set()
            if outcome == "cancelled" and state is not None:
                self._finish(job_id, "cancelled", recorded=True)
            return
        with self._lock:
            state = self._states.get(job_id)
            if state is None or state.status in TERMINAL:
                return
            state.cancel.set()
            queued = state.status == "queued"
        if queued:
            self._finish(job_id, "cancelled")

    def cancel_batch(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.cancel(job_id)

    # ---- the worker -----------------------------------------------------------------------------
    def _run_worker(self) -> None:
        if self._front_end is not None:
            self._run_shared_worker()
            return
        while True:
            token = self._queue.get()
            if token is None:
                return
            group: list[_Picked] = []
            with self._dispatch:  # with several workers, two must not pick the same job
                self._record_pending()
                job_id = self._next_job()
                if job_id is None:  # its job ran with an earlier batch, or was cancelled
                    continue
                with self._lock:
                    state = self._states.get(job_id)
                    if state is None or state.status != "queued":  # finished, or taken with its batch
                        continue
                try:
                    first = self._take(job_id)
                except Exception:
                    log.exception("job %s could not be started", job_id)
                    self._finish(job_id, "failed", error="internal error; see the server log")
                    continue
            if first is None:
                continue
            group.append(first)
            try:
                self._run_group(first, group)
            except Exception:  # the worker must survive anything a job does
                log.exception("job %s crashed the worker loop", job_id)
                for job in group or [_Picked(job_id, state, None, "", None, None, None)]:
                    self._finish(job.job_id, "failed", error="internal error; see the server log")

    def _run_shared_worker(self) -> None:
        """The shared queue: claim the next job from the database (round robin over authors, across front
        ends); woken by a submission here, else looking every poll_s for jobs queued elsewhere."""
        busy = False
        while True:
            if not busy:
                try:
                    if self._queue.get(timeout=self._poll_s) is None:
                        return
                except queue.Empty:
                    pass
            busy = False
            if self._draining.is_set():
                return
            reserved = None
            try:
                if self._executor is not None:  # a job is claimed only with a worker to run it (see reserve)
                    with self._session_factory() as session:
                        if not QueueRepository(session).claimable():
                            continue
                    reserved = self._executor.reserve(self._poll_s)
                    if reserved is None:
                        continue
                with self._dispatch:
                    self._record_pending()
                    first = self._claim(None)
            except Exception:
                log.exception("could not claim a job from the shared queue")
                first = None
            if first is None:
                if reserved is not None:
                    self._executor.unreserve(reserved)
                continue
            busy = True  # there may be more: look again at once
            group = [first]
            try:
                self._run_group(first, group, reserved)
            except Exception:  # the worker must survive anything a job does
                log.exception("job %s crashed the worker loop", first.job_id)
                for job in group:
                    self._finish(job.job_id, "failed", error="internal error; see the server log")
            finally:
                if reserved is not None:
                    self._executor.unreserve(reserved)  # no-op when the job took it

    def _claim(self, job_id: str | None) -> "_Picked | None":
        """Shared queue: claim `job_id` (a batch companion) or the next job in turn; None if none is free. A
        job whose parameters cannot be read fails here."""
        with self._session_factory() as session, session.begin():
            queue_repo = QueueRepository(session)
            job = (queue_repo.claim_next(self._front_end or "", self._lease_s) if job_id is None
                   else queue_repo.claim(self._front_end or "", job_id, self._lease_s))
            if job is None:
                return None
            try:
                picked = self._picked(job)
            except Exception as e:
                log.exception("job %s could not be started", job.id)
                JobRepository(session).mark_failed(job.id, f"its parameters cannot be read: {type(e).__name__}")
                picked = None
        if picked is None:
            self._forget(job.id)
            return None
        with self._lock:
            state = self._states.get(picked.job_id)
            if state is None:  # queued by another front end
                state = self._states[picked.job_id] = JobState(picked.job_id, picked.batch_id, picked.author)
            if picked.job_id not in self._order:
                self._order.append(picked.job_id)
            state.status, state.started = "running", time.monotonic()
            self._mine.add(picked.job_id)
        return dataclasses.replace(picked, state=state)

    @staticmethod
    def _picked(job: Job) -> "_Picked":
        params = job.params or {}
        request = (InterpolationRequest.from_params(params) if params.get("mode") == InterpolationRequest.mode
                   else request_from_params(params))
        return _Picked(job.id, None, request, job.batch_id, job.sweep_id, dict(job.axes) if job.axes else None,
                       job.parent_id, job.author)

    def _take(self, job_id: str) -> "_Picked | None":
        """Mark a queued job running (database and memory); None if it is no longer queued."""
        if self._front_end is not None:
            return self._claim(job_id)
        with self._session_factory() as session, session.begin():
            repo = JobRepository(session)
            job = repo.get(job_id)
            if job is None or job.status != "queued":
                self._forget(job_id)
                return None
            params = job.params or {}
            request = (InterpolationRequest.from_params(params) if params.get("mode") == InterpolationRequest.mode
                       else request_from_params(params))
            repo.mark_running(job_id)
            picked = _Picked(job_id, None, request, job.batch_id, job.sweep_id, dict(job.axes) if job.axes else None,
                             job.parent_id, job.author)
        with self._lock:
            state = self._states[job_id]
            state.status = "running"
            state.started = time.monotonic()
        return dataclasses.replace(picked, state=state)

    def _companions(self, first: "_Picked", limit: int) -> list[str]:
        """Queued jobs of the same batch (same cell: only the seed differs), in queue order, up to `limit`."""
        with self._lock:
            return [j for j in self._order
                    if j != first.job_id and (st := self._states.get(j)) is not None and st.status == "queued"
                    and st.batch_id == first.batch_id and not st.cancel.is_set()][:limit]

    def _run_group(self, first: "_Picked", group: list["_Picked"], reserved=None) -> None:  # type: ignore[no-untyped-def]
        job_id = first.job_id
        request = first.request
        if (short := self.space.shortage()) is not None:  # refused before it runs, not after minutes of work
            self._finish(job_id, "failed", error=short)
            return
        if isinstance(request, InterpolationRequest):  # no model: frames from a clip, by optical flow
            self._run_interpolation(first)
            return
        if self._executor is not None:  # generated on a worker of the executor; saved here
            self._run_remote(first, reserved)
            return

        import torch

        t0 = time.perf_counter()
        try:
            backend = self.registry.load(request.model_id, request.profile, request.transformer_sha256)
            batch = getattr(backend, "generate_batch", None)
            if batch is not None and first.batch_id:
                for other in self._companions(first, max(0, int(getattr(backend, "max_batch", 1)) - 1)):
                    picked = self._take(other)
                    if picked is not None:
                        group.append(picked)
            media = self.media.load(request)
            states = [g.state for g in group]

            def on_step(step: int, total: int, preview) -> None:
                now = time.monotonic()
                with self._lock:
                    for state in states:
                        state.step, state.total, state.last_step_at = step, total, now
                        if preview is not None:
                            state.preview = preview
                            state.preview_version += 1

            def should_cancel() -> bool:  # a batch stops when every job in it is cancelled
                return all(state.cancel.is_set() for state in states)

            generators = [torch.Generator(device="cpu").manual_seed(g.request.seed) for g in group]
            if len(group) > 1:
                outputs = list(self._runner(batch, request, [g.request.for_backend() for g in group], media,
                                            generators, on_step, should_cancel))
            else:
                outputs = [self._runner(backend.generate, request, request.for_backend(), media, generators[0],
                                        on_step, should_cancel)]
        except Cancelled:
            for g in group:
                self._finish(g.job_id, "cancelled")
            return
        except RequestError as e:
            for g in group:
                self._finish(g.job_id, "failed", error=str(e))
            return
        except Exception as e:  # model failure, out of memory, bad media discovered late
            log.exception("job %s failed", job_id)
            if is_out_of_memory(e):
                self.registry.unload()
            for g in group:
                self._finish(g.job_id, "failed", error=_describe(e))
            return
        seconds = (time.perf_counter() - t0) / len(group)
        for g, frames in zip(group, outputs):
            if g.state.cancel.is_set():
                self._finish(g.job_id, "cancelled")
                continue
            clip_id = self._save(g, backend.spec, safe_manifest(backend), frames, seconds)
            if clip_id is not None:
                self._finish(g.job_id, "done", clip_id=clip_id)

    def _run_remote(self, job: "_Picked", reserved=None) -> None:  # type: ignore[no-untyped-def]
        """One job on the executor's workers (first on the worker `reserved` for it, if any). A worker that
        dies under it (SIGKILL, out of host memory) made nothing, so the job is re-queued once, at the head
        of the queue, on another worker (the dead one has left the pool); if that one dies too, the job fails
        with the reason."""
        request, state = job.request, job.state
        t0 = time.perf_counter()

        def on_step(step: int, total: int, preview) -> None:
            now = time.monotonic()
            with self._lock:
                state.step, state.total, state.last_step_at = step, total, now
                if preview is not None:
                    state.preview = preview
                    state.preview_version += 1

        try:
            media = self.media.load(request)
            for attempt in range(1, WORKER_ATTEMPTS + 1):
                try:
                    result: Generated = self._executor.generate(
                        request.for_backend(), media, request.seed, on_step, state.cancel.is_set,
                        model_id=request.model_id, profile=request.profile, reserved=reserved)
                    break
                except WorkerLost as e:
                    reserved = None  # taken by the worker that died
                    if state.cancel.is_set():
                        raise Cancelled() from None
                    if attempt == WORKER_ATTEMPTS:
                        raise WorkerLost(f"{e}; it had already been re-queued once after a worker died, "
                                         "so it is not run again") from None
                    log.warning("job %s: %s; re-queued on another worker", job.job_id, e)
                    self._requeue_running(job.job_id)
                    with self._lock:
                        state.step = state.total = 0
                        state.started, state.preview = time.monotonic(), None
        except Cancelled:
            self._finish(job.job_id, "cancelled")
            return
        except (RequestError, WorkerLost) as e:
            self._finish(job.job_id, "failed", error=str(e))
            return
        except Exception as e:  # model failure, out of memory, bad media discovered late
            log.exception("job %s failed", job.job_id)
            self._finish(job.job_id, "failed", error=_describe(e))
            return
        seconds = time.perf_counter() - t0

        def save() -> None:
            try:
                if state.cancel.is_set():
                    self._finish(job.job_id, "cancelled")
                    return
                clip_id = self._save(job, result.spec, result.manifest, result.frames, seconds)
                if clip_id is not None:
                    self._finish(job.job_id, "done", clip_id=clip_id)
            except Exception:
                log.exception("job %s: saving its clip failed", job.job_id)
                self._finish(job.job_id, "failed", error="internal error; see the server log")
            finally:
                with self._lock:
                    self._generated.discard(job.job_id)
                self._saving.release()

        self._saving.acquire()
        with self._lock:
            self._generated.add(job.job_id)
        self._savers.submit(save)

    def _requeue_running(self, job_id: str) -> None:
        """Back to queued and at once running again (the attempt counted): a restart of the studio in
        between sees the job's attempts as they were."""
        with self._session_factory() as session, session.begin():
            repo = JobRepository(session)
            job = repo.get(job_id)
            if job is not None and job.status == "running":
                job.status = "queued"
                job.started_at = None
                session.flush()
                repo.mark_running(job_id)

    def _run_interpolation(self, job: "_Picked") -> None:
        request: InterpolationRequest = job.request  # type: ignore[assignment]
        state = job.state
        t0 = time.perf_counter()
        try:
            with self._session_factory() as session:
                source = GalleryRepository(session).get(request.source)
                if source is None:
                    raise RequestError("clip", f"clip {request.source} was deleted before it could be interpolated")
                src = {k: getattr(source, k) for k in ("id", "video_path", "fps", "params", "manifest", "inputs",
                                                        "model_id", "model_version")}
            frames, _ = read_video(self.files.fetch(src["video_path"]), self.media.limits)

            def on_pair(done: int, total: int) -> None:
                with self._lock:
                    state.step, state.total, state.last_step_at = done, total, time.monotonic()

            out, used = self.media.interpolate(frames, request, on_pair=on_pair, should_cancel=state.cancel.is_set)
            del frames
        except Cancelled:
            self._finish(job.job_id, "cancelled")
            return
        except (RequestError, MediaError) as e:
            self._finish(job.job_id, "failed", error=str(e))
            return
        except Exception as e:
            log.exception("interpolation job %s failed", job.job_id)
            self._finish(job.job_id, "failed", error=f"interpolation failed: {type(e).__name__}: {e}")
            return
        if state.cancel.is_set():
            self._finish(job.job_id, "cancelled")
            return
        seconds = time.perf_counter() - t0
        clip_id = uuid.uuid4().hex
        fps = int(src["fps"]) * request.factor
        step = {"factor": request.factor, "method": request.method, **used, "source": src["id"],
                "source_fps": int(src["fps"]), "source_frames": (len(out) - 1) // request.factor + 1}
        previous = (src["params"] or {}).get("interpolation")
        if previous:  # an interpolated clip interpolated again: keep the whole path back to the generation
            step["previous"] = previous
        # the source's recipe unchanged (recall gives back the request that generated the source) plus the step
        params = {**src["params"], "interpolation": step}
        manifest = {**(src["manifest"] or {}), "interpolation": {**step, **_opencv_version()}}
        recipe = {
            "clip_id": clip_id, "model": src["model_id"], "model_version": src["model_version"], "params": params,
            "inputs": src["inputs"], "manifest": manifest, "sweep": None, "axes": None, "parent": src["id"],
            "author": job.author, "created_at": utcnow().isoformat(), "interpolation": step,
        }
        row = lambda: Clip.from_params(  # noqa: E731
            params, id=clip_id, job_id=job.job_id, batch_id=job.batch_id, sweep_id=None, axes=None,
            parent_id=src["id"], author=job.author, created_at=utcnow(), model_id=src["model_id"],
            model_version=src["model_version"], frames=int(out.shape[0]), fps=fps, width=int(out.shape[2]),
            height=int(out.shape[1]), manifest=manifest, inputs=src["inputs"] or {}, generation_seconds=seconds,
        )
        if self._store(job.job_id, clip_id, out, fps, recipe, row) is not None:
            self._finish(job.job_id, "done", clip_id=clip_id)

    def _save(self, job: "_Picked", spec: ModelSpec, backend_manifest: dict, frames, seconds: float) -> str | None:
        """Write the files, then commit the row. If either fails, neither remains."""
        job_id, request = job.job_id, job.request
        clip_id = uuid.uuid4().hex
        manifest = {**self._library_versions(), **backend_manifest}
        inputs = self.media.describe_inputs(request)
        recipe = {
            "clip_id": clip_id,
            "model": spec.id,
            "model_version": spec.version,
            "params": request.to_params(),
            "inputs": inputs,
            "manifest": manifest,
            "sweep": job.sweep_id,
            "axes": job.axes,
            "parent": job.parent_id,
            "author": job.author,
            "created_at": utcnow().isoformat(),
        }
        row = lambda: Clip.from_params(  # noqa: E731 (built once the files are written: frames checked)
            request.to_params(),
            id=clip_id,
            job_id=job_id,
            batch_id=job.batch_id,
            sweep_id=job.sweep_id,
            axes=job.axes,
            parent_id=job.parent_id,
            author=job.author,
            created_at=utcnow(),
            model_id=spec.id,
            model_version=spec.version,
            frames=int(frames.shape[0]),  # what was made, should a backend round a size
            width=int(frames.shape[2]),
            height=int(frames.shape[1]),
            manifest=manifest,
            inputs=inputs,
            generation_seconds=seconds,
        )
        return self._store(job_id, clip_id, frames, request.fps, recipe, row)

    def _store(self, job_id: str, clip_id: str, frames, fps: int, recipe: dict, row: Callable[[], Clip]) -> str | None:
        """Write the files (atomically), then commit the gallery row (`row()`, its file paths filled in here)
        and the job's end in one transaction. If either fails, neither remains."""
        try:
            saved = self.files.save_clip(clip_id, frames, fps, recipe)
        except Exception as e:
            log.exception("could not write clip files for job %s", job_id)
            self._finish(job_id, "failed", error=f"could not write the clip: {e}")
            return None
        try:
            clip = row()
            clip.video_path, clip.thumb_path, clip.sidecar_path = saved.video, saved.thumb, saved.sidecar
            with self._session_factory() as session, session.begin():
                if self._front_end is not None:  # only the claimant ends a job: a lost one was reclaimed
                    QueueRepository(session).check_claim(self._front_end, job_id)
                GalleryRepository(session).add(clip)
                JobRepository(session).mark_done(job_id, clip_id)
        except LostClaim:
            log.warning("job %s: lost its lease before its clip was recorded; its files are removed", job_id)
            self.files.remove_clip(clip_id)
            with self._lock:
                self._lost.add(job_id)
            self._finish(job_id, "failed")
            return None
        except Exception as e:
            log.exception("could not record clip for job %s", job_id)
            self.files.remove_clip(clip_id)
            self._finish(job_id, "failed", error=f"could not record the clip: {e}")
            return None
        return clip_id

    def _finish(self, job_id: str, status: str, *, clip_id: str | None = None, error: str | None = None,
                recorded: bool = False) -> None:
        """`recorded`: the end is in the database already (another front end wrote it, or a cancel did)."""
        if self._front_end is not None:
            if status == "cancelled" and job_id in self._handing_back and self._hand_back(job_id):
                return
            with self._lock:
                self._mine.discard(job_id)
                lost = job_id in self._lost
                self._lost.discard(job_id)
                state = self._states.get(job_id)
                if lost and state is not None:  # reclaimed: it waits (or runs) elsewhere now; watched from here
                    state.status, state.step, state.total, state.preview = "queued", 0, 0, None
                    state.cancel = threading.Event()
            if lost:
                return
        if status != "done" and not recorded:  # "done" was committed together with the clip row
            self._record(job_id, status, error)
        with self._lock:
            state = self._states.get(job_id)
            if state is not None:
                state.status, state.clip_id, state.error = status, clip_id, error
                state.preview = None  # a full-size preview is tens of MB; nobody shows it after the end
                state.finished.set()
                self._retire_locked(job_id)
            if job_id in self._order:
                self._order.remove(job_id)

    def _hand_back(self, job_id: str) -> bool:
        """Stopping: a running job this front end interrupted goes back to the shared queue, for another front
        end to run (its attempt not counted). False when that cannot be written: it is then recorded as
        cancelled, as a job that stops with a single front end is."""
        try:
            with self._session_factory() as session, session.begin():
                back = QueueRepository(session).hand_back(self._front_end or "", job_id)
        except Exception:
            log.exception("job %s: could not give it back to the shared queue", job_id)
            return False
        with self._lock:
            self._handing_back.discard(job_id)
            self._mine.discard(job_id)
            if (state := self._states.get(job_id)) is not None and back == "queued":
                state.status, state.step, state.total, state.preview = "queued", 0, 0, None
                state.cancel = threading.Event()
        if back == "queued":
            log.info("job %s: this front end stops; given back to the shared queue", job_id)
            return True
        return False

    def _record(self, job_id: str, status: str, error: str | None) -> bool:
        """Write that a job ended (failed or cancelled). On a full disk, give up the reserve and try again;
        if that fails too, keep it to write later, so the job is never taken for one still to run."""
        for attempt in (1, 2):
            try:
                self._write_end(job_id, status, error)
                self._unrecorded.pop(job_id, None)
                return True
            except Exception as e:
                if attempt == 1 and is_disk_full(e) and self.space.release():
                    log.warning("the disk is full: gave up the reserve to record that job %s %s", job_id, status)
                    continue
                if job_id not in self._unrecorded:
                    journaled = self.space.journal(job_id, status, error)
                    log.error("could not record that job %s %s (%s); %s", job_id, status, e,
                              "journaled: the next start records it and does not run it again" if journaled
                              else "it is written once there is room")
                self._unrecorded[job_id] = (status, error)
                return False
        return False

    def _apply_journal(self) -> None:
        """At start: the ends a full disk kept out of the database (see storage.space), before any re-queue."""
        entries = self.space.journaled()
        if not entries:
            return
        for job_id, status, error in entries:
            try:
                self._write_end(job_id, status, error)
            except Exception as e:
                if is_disk_full(e):
                    raise DataDirError("the data dir's disk is full: jobs that ended while it was full cannot be "
                                       "recorded yet; free some space and start again") from None
                raise
            log.warning("job %s: recorded as %s from the journal (the disk was full when it ended)", job_id, status)
        self.space.clear_journal()

    def _write_end(self, job_id: str, status: str, error: str | None) -> None:
        with self._session_factory() as session, session.begin():
            repo = JobRepository(session)
            if self._shared_name is not None:  # locked: no claim or reclaim changes it under this write
                job = QueueRepository(session).lock(job_id)
                if job is not None and job.status == "running" and job.claimed_by != self._front_end:
                    return  # another front end's now: not ours to end
            else:
                job = repo.get(job_id)
            if job is not None and job.status not in TERMINAL:
                if status == "cancelled":
                    repo.mark_cancelled(job_id)
                else:
                    repo.mark_failed(job_id, error or "failed")

    def _record_pending(self) -> None:
        """Write the ends that a full disk kept from being written; take the reserve again once there is room."""
        if not self._unrecorded:
            if not self.space.reserve_path.exists() and self.space.shortage() is None:
                self.space.hold()
            return
        for job_id, (status, error) in list(self._unrecorded.items()):
            if not self._record(job_id, status, error):
                return
        self.space.clear_journal()  # everything it held is in the database now
        if self.space.shortage() is None:
            self.space.hold()

    def _retire_locked(self, job_id: str) -> None:
        """Keep the newest MAX_FINISHED_STATES finished states; older ones are read from the database."""
        if job_id in self._finished:
            return
        self._finished.append(job_id)
        while len(self._finished) > MAX_FINISHED_STATES:
            self._states.pop(self._finished.popleft(), None)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            state = self._states.get(job_id)
            if job_id in self._order:
                self._order.remove(job_id)
            if state is not None:
                state.finished.set()
                self._retire_locked(job_id)


@dataclass(frozen=True)
class _Picked:
    """A job the worker took: its live state and what saving its clip needs."""

    job_id: str
    state: JobState | None
    request: GenerationRequest | None
    batch_id: str
    sweep_id: str | None
    axes: dict | None
    parent_id: str | None
    author: str | None = None


def _opencv_version() -> dict:
    import cv2

    return {"opencv": cv2.__version__}


def _describe(e: BaseException) -> str:
    if is_out_of_memory(e):  # the one place that words out-of-memory advice
        hint = e.hint if isinstance(e, OutOfMemory) and e.hint else "try a lower-memory profile"
        return f"out of memory: the model was unloaded; {hint}, fewer frames or a smaller size."
    if isinstance(e, (ModelLoadError, ValueError)):
        return str(e)
    return f"the model failed: {type(e).__name__}: {e}"
