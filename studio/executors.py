"""Where a generation runs: the job service's executor.

`local` (the default) is no object at all: the job service's own worker thread loads the backend through
the registry and generates in-process, as it always has. `ray` is `RayExecutor` below: a pool of Ray actors,
one per GPU (on a CPU cluster, one per `cpus_per_worker` CPUs), each with a registry of its own that keeps
its model loaded between jobs.

The split follows the job service's: queueing, the database, files and the gallery stay in the front end.
The executor's business is only "load the backend, generate the frames": it takes a resolved request, its
decoded media and a seed, and gives back the frames (uint8) with the backend's spec and manifest; the front
end then saves the clip and commits its row exactly as for a local job. While a job runs, its actor streams
(step, total, preview) events back (a Ray streaming generator), and a cancel reaches it through a second
actor method that sets the flag the backend checks at every step (the actor runs two calls at once).

Ray is an optional extra (`pip install -e ".[ray]"`) and is imported only when a RayExecutor starts.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipelines.contract import Cancelled, MediaInputs, ModelSpec, is_out_of_memory

if TYPE_CHECKING:
    import numpy as np

    from pipelines.contract import GenerationRequest, ModelRegistry, StepCallback

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
PREVIEW_MAX_SIDE = 256  # previews travel from the worker to the front end: at most this many pixels a side
# Each event is a trip through Ray (measured here: a few ms of a 0.5 s clip each, on 2 busy cores), so a
# worker sends its progress at most every STEP_EVERY_S, with the newest preview if there is one: the UI polls
# every 0.25 s and would not show more. The first step goes at once; the last comes with the frames. Cancel
# is not throttled: the backend checks it at every step.
STEP_EVERY_S = 0.25
IDLE_TIMEOUT_S = 300.0  # a worker idle this long is stopped (the pool grows again when jobs come)
START_TIMEOUT_S = 300.0  # a worker's process that is not up by then (the cluster has no room) is given up


class ExecutorUnavailable(RuntimeError):
    """The executor cannot be used: Ray is not installed, or its cluster cannot be reached."""


class WorkerLost(RuntimeError):
    """The worker process running a job died (killed, out of host memory, its node gone): the job produced
    nothing there, so it can safely run again on another worker."""


@dataclass(frozen=True, eq=False)
class Generated:
    """What a remote generation gives back: the frames and what the front end's recipe needs of the backend."""

    frames: "np.ndarray"  # (F, H, W, 3) uint8
    spec: ModelSpec
    manifest: dict
    worker: str  # the pool's name for the worker that made it ("worker-2")


# ---- the worker (runs inside a Ray actor process) -------------------------------------------------------
class StudioWorker:
    """One Ray actor: its own model registry, one backend kept loaded between jobs.

    `run` is a generator (a Ray streaming call): it yields ("step", step, total, preview) while the backend
    denoises, then one ("done", frames, spec, manifest, loaded, (step, total)) or ("error", exception,
    loaded, (step, total)), with the last step the backend reached. The backend runs in a thread of its
    own so that its step callback can hand events to the generator.
    """

    def __init__(self, registry_factory: Callable[[], "ModelRegistry"], torch_threads: int | None):
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self._registry = registry_factory()
        self._lock = threading.Lock()
        self._job: str | None = None
        self._cancel = threading.Event()
        self._early: set[str] = set()  # jobs cancelled before their `run` began here (the calls race)
        self._loaded: tuple[str, str | None] | None = None

    def pid(self) -> int:
        return os.getpid()

    def load(self, model_id: str, profile: str | None) -> tuple[str, str | None]:
        """Load a model ahead of its first job (warm-up)."""
        self._registry.load(model_id, profile)
        self._loaded = (model_id, profile)
        return self._loaded

    def cancel(self, job_key: str) -> None:
        with self._lock:
            if self._job == job_key:
                self._cancel.set()
            else:  # not begun yet (or already over: a few stale keys are kept, at most 64)
                if len(self._early) >= 64:
                    self._early.pop()
                self._early.add(job_key)

    def run(self, job_key: str, request: "GenerationRequest", media: MediaInputs, seed: int,
            model_id: str, profile: str | None):
        events: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        with self._lock:
            self._job = job_key
            self._cancel = cancel = threading.Event()
            if job_key in self._early:
                self._early.discard(job_key)
                cancel.set()

        sent = [0.0]  # when the last step event went
        held: list = [None]  # the newest preview not sent yet
        last = [(0, 0)]  # the last step seen: it comes home with the frames

        def on_step(step: int, total: int, preview) -> None:
            now = time.monotonic()
            last[0] = (step, total)
            if preview is not None:
                held[0] = preview
            if now - sent[0] < STEP_EVERY_S:
                return
            sent[0] = now
            out, held[0] = _small(held[0]), None
            events.put(("step", step, total, out))

        def work() -> None:
            try:
                import numpy as np
                import torch

                backend = self._registry.load(model_id, profile, getattr(request, "transformer_sha256", None))
                self._loaded = (model_id, profile)
                generator = torch.Generator(device="cpu").manual_seed(seed)
                frames = backend.generate(request, media, generator, on_step, cancel.is_set)
                events.put(("done", np.ascontiguousarray(frames), backend.spec, safe_manifest(backend), self._loaded,
                            last[0]))
            except BaseException as e:  # every failure goes back to the front end, which words it
                if is_out_of_memory(e):
                    self._registry.unload()
                    self._loaded = None
                events.put(("error", _portable(e), self._loaded, last[0]))

        thread = threading.Thread(target=work, name=f"studio-job-{job_key[:8]}", daemon=True)
        thread.start()
        try:
            while True:
                item = events.get()
                yield item
                if item[0] != "step":
                    return
        finally:
            thread.join()
            with self._lock:
                self._job = None


def _small(preview):
    """A preview scaled down (by striding) to at most PREVIEW_MAX_SIDE pixels a side, for the trip home."""
    if preview is None:
        return None
    k = math.ceil(max(preview.shape[1], preview.shape[2]) / PREVIEW_MAX_SIDE)
    return preview[:, ::k, ::k].copy() if k > 1 else preview


def safe_manifest(backend) -> dict:  # type: ignore[no-untyped-def]
    """The backend's manifest, or {} (logged) when it fails: a clip is never lost to its report."""
    try:
        return dict(backend.manifest())
    except Exception:
        log.exception("backend manifest failed")
        return {}


def _portable(e: BaseException) -> BaseException:
    """The exception itself when it survives pickling (the front end's except clauses then see its type),
    else a RuntimeError that names it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


# ---- the front end's side ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Reservation:
    """A worker held for a job not claimed yet (RayExecutor.reserve)."""

    slot: "_Slot"
    taken: bool = False


@dataclass(eq=False)
class _Slot:
    name: str
    actor: Any = None  # the actor handle; None while it starts
    pid: int | None = None
    loaded: tuple[str, str | None] | None = None  # (model id, profile) it holds
    busy: bool = True
    last_used: float = field(default_factory=time.monotonic)


class RayExecutor:
    """A pool of StudioWorker actors on a Ray cluster.

    A job goes to an idle worker that already holds its model and profile when there is one, else to the
    least recently used idle worker; when every worker is busy the pool grows, up to what the cluster can
    hold (one worker per GPU, or per `cpus_per_worker` CPUs on a cluster without GPUs) and `max_workers`.
    A worker idle for `idle_timeout_s` is stopped. A worker that dies mid-job is dropped from the pool and
    its job raises WorkerLost (the job service runs it once more, on another worker).
    """

    name = "ray"

    def __init__(self, registry_factory: Callable[[], "ModelRegistry"], *, address: str | None = None,
                 max_workers: int | None = None, cpus_per_worker: float = 1.0, torch_threads: int | None = None,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, poll_s: float = 0.02, num_cpus: int | None = None):
        self._registry_factory = registry_factory
        self.address = address
        self.max_workers = max_workers
        self.cpus_per_worker = cpus_per_worker
        self.torch_threads = torch_threads
        self.idle_timeout_s = idle_timeout_s
        self.poll_s = poll_s  # how often a running job's loop looks at its cancel flag
        self._num_cpus = num_cpus  # a local cluster's CPUs (None: the machine's)
        self._slots: list[_Slot] = []
        self._cond = threading.Condition()
        self._started = False
        self._owns_ray = False
        self._actor_class = None
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self._count = 0

    # ---- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to the cluster at `address`; with none, start a local one (unless Ray is already up in
        this process, which is then used as it is)."""
        if self._started:
            return
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable('the ray executor needs Ray: pip install -e ".[ray]"') from None
        if not ray.is_initialized():
            kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING}
            if self.address:
                kwargs["address"] = self.address
            else:
                # a local cluster's workers import this very checkout (whatever an installed copy says)
                root = str(Path(__file__).resolve().parents[1])
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
                kwargs.update(address="local", num_cpus=self._num_cpus,
                              runtime_env={"env_vars": {"PYTHONPATH": path}})
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
                hint = ""
                if self.address and not os.environ.get("RAY_AUTH_MODE"):
                    hint = (" (a cluster started with `ray start` asks for its token: set RAY_AUTH_MODE=token and "
                            "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)")
                raise ExecutorUnavailable(f"cannot use {where}: {str(e).splitlines()[0][:300]}{hint}") from None
            self._owns_ray = True
        self._actor_class = ray.remote(StudioWorker)
        self._started = True
        self._stop.clear()
        self._reaper = threading.Thread(target=self._reap_loop, name="studio-ray-reaper", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        """Stop every worker (and the local cluster this executor started)."""
        if not self._started:
            return
        import ray

        self._stop.set()
        with self._cond:
            slots, self._slots = self._slots, []
            self._cond.notify_all()
        for slot in slots:
            self._kill(slot)
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
        self._started = False

    # ---- sizing -----------------------------------------------------------------------------------------
    def _per_worker(self) -> dict:
        import ray

        if ray.cluster_resources().get("GPU", 0) >= 1:
            return {"num_gpus": 1, "num_cpus": 0}
        return {"num_cpus": self.cpus_per_worker}

    def capacity(self) -> int:
        """How many workers the cluster can hold now (at least 1), within `max_workers`."""
        import ray

        resources = ray.cluster_resources()
        if resources.get("GPU", 0) >= 1:
            n = int(resources["GPU"])
        else:
            n = int(resources.get("CPU", 0) // self.cpus_per_worker)
        if self.max_workers:
            n = min(n, self.max_workers)
        return max(1, n)

    def concurrency(self) -> int:
        """How many jobs may run at once: the job service runs that many dispatch threads."""
        return self.capacity()

    def workers(self) -> list[dict]:
        """The pool now: name, pid, busy, the model it holds, seconds since its last job."""
        now = time.monotonic()
        with self._cond:
            return [{"name": s.name, "pid": s.pid, "busy": s.busy, "loaded": s.loaded,
                     "idle_s": 0.0 if s.busy else now - s.last_used} for s in self._slots]

    # ---- the pool ---------------------------------------------------------------------------------------
    def _acquire(self, key: tuple[str, str | None]) -> _Slot:
        with self._cond:
            while True:
                if not self._started:
                    raise ExecutorUnavailable("the ray executor is stopped")
                idle = [s for s in self._slots if not s.busy and s.actor is not None]
                pick = next((s for s in idle if s.loaded == key), None)
                if pick is None and idle:
                    pick = min(idle, key=lambda s: s.last_used)
                if pick is not None:
                    pick.busy = True
                    return pick
                if len(self._slots) < self.capacity():
                    self._count += 1
                    slot = _Slot(f"worker-{self._count}")
                    self._slots.append(slot)
                    break
                self._cond.wait(1.0)  # every worker busy and the cluster full: wait for one
        try:
            self._spawn(slot)
        except BaseException:
            with self._cond:
                self._slots.remove(slot)
                self._cond.notify_all()
            raise
        return slot

    def _room(self) -> bool:
        """Whether the cluster has the resources of one more worker free now (other front ends' workers and
        other Ray jobs hold the rest)."""
        import ray

        free = ray.available_resources()
        if self._per_worker().get("num_gpus"):
            return free.get("GPU", 0) >= 1
        return free.get("CPU", 0) >= self.cpus_per_worker

    def reserve(self, timeout: float) -> "Reservation | None":
        """A started worker, held for the job about to be claimed: an idle one, else a new one when the
        cluster has room for it now; None when neither comes within `timeout`. A front end on a shared queue
        claims a job only once it holds a worker, so that a job never waits on a front end whose pool cannot
        grow (another front end's workers fill the cluster) while a worker elsewhere is free. The job's
        `generate(..., reserved=)` takes it; `unreserve` gives it back when no job was claimed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if not self._started:
                    raise ExecutorUnavailable("the ray executor is stopped")
                idle = [s for s in self._slots if not s.busy and s.actor is not None]
                if idle:
                    pick = min(idle, key=lambda s: s.last_used)
                    pick.busy = True
                    return Reservation(pick)
                if len(self._slots) < self.capacity() and self._room():
                    self._count += 1
                    slot = _Slot(f"worker-{self._count}")
                    self._slots.append(slot)
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 1.0))
        try:
            self._spawn(slot)
        except Exception as e:  # the cluster filled up meanwhile (another front end took the room)
            log.info("ray executor: %s", e)
            with self._cond:
                self._slots.remove(slot)
                self._cond.notify_all()
            return None
        return Reservation(slot)

    def unreserve(self, held: "Reservation") -> None:
        """Give back a reserved worker that no job took."""
        if not held.taken:
            held.taken = True
            self._release(held.slot)

    def _spawn(self, slot: _Slot) -> None:
        self._wait_started(slot, *self._create(slot))

    def _create(self, slot: _Slot):  # type: ignore[no-untyped-def]
        """Ask the cluster for the worker's process (two calls at a time: a job and its cancel)."""
        res = self._per_worker()
        # torch threads: what was asked, else one per CPU the worker holds (a GPU worker keeps torch's default)
        threads = self.torch_threads or (None if res.get("num_gpus") else max(1, int(self.cpus_per_worker)))
        actor = self._actor_class.options(max_concurrency=2, max_restarts=0, **res).remote(
            self._registry_factory, threads)
        return actor, actor.pid.remote()

    def _wait_started(self, slot: _Slot, actor, pid_ref) -> None:  # type: ignore[no-untyped-def]
        import ray

        try:
            slot.pid = ray.get(pid_ref, timeout=START_TIMEOUT_S)  # the process up, its registry built
        except Exception as e:
            ray.kill(actor)
            raise ExecutorUnavailable(f"could not start a Ray worker: {str(e).splitlines()[0][:300]}") from None
        slot.actor = actor
        log.info("ray executor: %s started (pid %s)", slot.name, slot.pid)

    def _take(self, held: "Reservation", key: tuple[str, str | None]) -> _Slot:
        """The reserved worker, or an idle one that holds the job's model already (loads are minutes for
        real models), the reserved one then going back to the pool."""
        if held.taken:
            raise RuntimeError("a reservation is used once")
        held.taken = True
        slot = held.slot
        if slot.loaded == key:
            return slot
        with self._cond:
            better = next((s for s in self._slots if not s.busy and s.actor is not None and s.loaded == key), None)
            if better is None:
                return slot
            better.busy = True
        self._release(slot)
        return better

    def _release(self, slot: _Slot) -> None:
        with self._cond:
            slot.busy = False
            slot.last_used = time.monotonic()
            self._cond.notify_all()

    def _discard(self, slot: _Slot) -> None:
        with self._cond:
            if slot in self._slots:
                self._slots.remove(slot)
            self._cond.notify_all()
        self._kill(slot)

    def _kill(self, slot: _Slot) -> None:
        if slot.actor is None:
            return
        import ray

        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone
            pass

    def _reap_loop(self) -> None:
        while not self._stop.wait(min(1.0, max(0.1, self.idle_timeout_s / 4))):
            self.reap()

    def reap(self) -> None:
        """Stop the workers that have been idle for `idle_timeout_s`."""
        now = time.monotonic()
        with self._cond:
            old = [s for s in self._slots if not s.busy and s.actor is not None
                   and now - s.last_used >= self.idle_timeout_s]
            for s in old:
                self._slots.remove(s)
        for s in old:
            log.info("ray executor: %s idle for %.0f s: stopped", s.name, now - s.last_used)
            self._kill(s)

    def warm_up(self, model_id: str, profile: str | None = None, workers: int | None = None) -> None:
        """Start workers (all the cluster holds, or `workers`) and load a model on each, before any job."""
        import ray

        key = (model_id, profile)
        slots = []
        with self._cond:
            want = min(workers or self.capacity(), self.capacity()) - len(self._slots)
            for _ in range(max(0, want)):
                self._count += 1
                slot = _Slot(f"worker-{self._count}")
                self._slots.append(slot)
                slots.append(slot)
        created = [(slot, *self._create(slot)) for slot in slots]  # the processes start side by side
        started = []
        for slot, actor, pid_ref in created:
            try:
                self._wait_started(slot, actor, pid_ref)
                started.append((slot, slot.actor.load.remote(model_id, profile)))
            except Exception as e:
                log.warning("ray executor: %s", e)
                self._discard(slot)
        for slot, ref in started:
            try:
                ray.get(ref)
                slot.loaded = key
            except Exception as e:
                log.info("ray executor: %s did not load %s ahead of time: %s", slot.name, model_id,
                         str(e).splitlines()[0][:200])
            self._release(slot)

    # ---- one job ----------------------------------------------------------------------------------------
    def generate(self, request: "GenerationRequest", media: MediaInputs, seed: int, on_step: "StepCallback",
                 should_cancel: Callable[[], bool], *, model_id: str, profile: str | None,
                 reserved: "Reservation | None" = None) -> Generated:
        """Run one generation on a worker of the pool (the `reserved` one, unless an idle worker already
        holds the model). Raises what the backend raised (Cancelled, RequestError, ...), or WorkerLost when
        the worker died under it."""
        import ray
        from ray.exceptions import ObjectLostError, RayActorError, WorkerCrashedError
        from ray.exceptions import OutOfMemoryError as RayOutOfMemory

        if should_cancel():
            if reserved is not None:
                self.unreserve(reserved)
            raise Cancelled()
        slot = self._acquire((model_id, profile)) if reserved is None else self._take(reserved, (model_id, profile))
        job_key = uuid.uuid4().hex
        lost = finished = False
        stream = None
        try:
            stream = slot.actor.run.options(num_returns="streaming").remote(
                job_key, request, media, seed, model_id, profile)
            cancel_sent = False
            while True:
                if not cancel_sent and should_cancel():
                    slot.actor.cancel.remote(job_key)  # the backend stops at its next step
                    cancel_sent = True
                ready, _ = ray.wait([stream], timeout=self.poll_s)
                if not ready:
                    continue
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    raise WorkerLost(f"{slot.name} ended the job without a result") from None
                if item[0] == "step":
                    on_step(item[1], item[2], item[3])
                elif item[0] == "done":
                    finished = True
                    _, frames, spec, manifest, slot.loaded, (step, total) = item
                    if total:
                        on_step(step, total, None)
                    return Generated(frames, spec, manifest, slot.name)
                else:
                    finished = True
                    _, error, slot.loaded, (step, total) = item
                    if total:  # where it stopped (a cancelled job: the step the cancel reached it at)
                        on_step(step, total, None)
                    raise error
        except (RayActorError, WorkerCrashedError, ObjectLostError, RayOutOfMemory) as e:
            lost = True
            raise WorkerLost(f"{slot.name} (pid {slot.pid}) died while running it ({_first_line(e)}: killed, "
                             "out of memory, or crashed)") from None
        finally:
            if not lost and not finished and not self._settle(slot, job_key, stream):
                lost = True
            if lost:
                self._discard(slot)
            else:
                self._release(slot)

    def _settle(self, slot: _Slot, job_key: str, stream) -> bool:  # type: ignore[no-untyped-def]
        """After the front end left a job's loop early (an error of its own): stop the job on the worker and
        wait for its end, so the worker is free for the next one. False: the worker must be dropped."""
        import ray

        if stream is None:
            return True
        try:
            slot.actor.cancel.remote(job_key)
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline:
                ready, _ = ray.wait([stream], timeout=1.0)
                if ready:
                    try:
                        if ray.get(next(stream))[0] != "step":
                            return True
                    except StopIteration:
                        return True
            return False
        except Exception:
            return False


def _first_line(e: BaseException) -> str:
    """Ray's reason in one sentence: its "Worker exit detail" when it gives one, else its first line."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    detail = text.split("Worker exit detail:", 1)
    line = (detail[1] if len(detail) > 1 else text).strip().splitlines()[0]
    return line.split(". ")[0].rstrip(".")[:200]
