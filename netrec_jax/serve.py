"""The recommendation service: `launch.py --mode=serve --restore_from=WORKDIR --port=8000`.

A FastAPI app served by uvicorn (one process, one event loop). Endpoints, all JSON:

  GET  /health                              model, data, split, fold-in method, counters
  GET  /users/{user_id}/recommendations?n=10&min_ratings=1
                                            top-n for a known user (original id), the movies
                                            they rated in training excluded
  POST /users/recommendations               {"user_ids": [..], "n": 10}: several users at once
  POST /new_user/recommendations            {"ratings": {"movie_id": stars, ...}, "n": 10}, or
                                            "ratings": [[movie_id, stars], ...]; the given
                                            movies are never returned
  GET  /movies/{movie_id}/similar?n=10&min_ratings=1
                                            nearest movies by cosine in item embedding space

min_ratings (default 1) lists only movies with at least that many training ratings.

The model is restored once, before the server starts listening, and warmed up (the jitted
scoring compiles then, not on the first request). Only one thread, the model worker, ever
touches the model: request handlers validate input on the event loop, queue a job and await
its future. User top-N jobs that are waiting together are scored in one `score_items` call
(dynamic batching: nothing waits for a batch to fill, a batch is what queued up while the
model was busy), up to the number of users one compiled predict call holds.

Errors: an unknown user or movie id is 404, a malformed request (bad JSON, wrong types, n out
of [1, MAX_N], stars out of range) is 400 or 422, and a model that cannot serve a request
(e.g. an item-based AutoRec asked for a new user) is 422, each with {"error": message}.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from netrec_jax import use

MAX_BATCH_USERS = 64  # upper bound on users scored in one batched call
MAX_USERS_PER_REQUEST = 1024
MAX_GIVEN_RATINGS = 10_000


class UsersRequest(BaseModel):
  """POST /users/recommendations."""
  model_config = ConfigDict(extra="forbid")
  user_ids: list[int] = Field(min_length=1, max_length=MAX_USERS_PER_REQUEST)
  n: int = Field(use.DEFAULT_N, ge=1, le=use.MAX_N)
  min_ratings: int = Field(1, ge=1)


class NewUserRequest(BaseModel):
  """POST /new_user/recommendations: {movie_id: stars} or [[movie_id, stars], ...]."""
  model_config = ConfigDict(extra="forbid")
  ratings: dict[int, float] | list[tuple[int, float]] = Field(
      min_length=1, max_length=MAX_GIVEN_RATINGS)
  n: int = Field(use.DEFAULT_N, ge=1, le=use.MAX_N)
  min_ratings: int = Field(1, ge=1)


@dataclasses.dataclass
class _Job:
  kind: str  # "users" (batched) or "call" (anything else, run alone)
  payload: Any
  future: concurrent.futures.Future


class ModelWorker:
  """The single thread that runs the model; batches queued user top-N jobs together."""

  def __init__(self, opened: use.OpenedModel, max_batch_users: int):
    self.opened = opened
    self.max_batch_users = max(1, max_batch_users)
    self.batches = 0  # score_items calls made for user jobs
    self.batched_users = 0  # users scored in them
    self._jobs: queue.Queue[_Job | None] = queue.Queue()
    self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)
    self._thread.start()

  def users(self, user_ids: list[int], n: int, min_ratings: int = 1
            ) -> concurrent.futures.Future:
    """Future of [user entry] for known users (ids already validated)."""
    return self._submit("users", (user_ids, n, min_ratings))

  def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
    """Future of fn() run on the model thread."""
    return self._submit("call", fn)

  def close(self) -> None:
    self._jobs.put(None)
    self._thread.join(timeout=10)

  def _submit(self, kind: str, payload: Any) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    self._jobs.put(_Job(kind, payload, future))
    return future

  def _run(self) -> None:
    deferred: list[_Job] = []
    while True:
      job = deferred.pop(0) if deferred else self._jobs.get()
      if job is None:
        return
      if job.kind == "call":
        _resolve(job.future, job.payload)
        continue
      # Take every user job already waiting (up to the batch size) into one scoring call.
      batch, n_users = [job], len(job.payload[0])
      while n_users < self.max_batch_users:
        try:
          nxt = self._jobs.get_nowait()
        except queue.Empty:
          break
        if nxt is None or nxt.kind != "users":
          deferred.append(nxt)
          break
        batch.append(nxt)
        n_users += len(nxt.payload[0])
      self._score_users(batch)
      if deferred and deferred[-1] is None:
        return

  def _score_users(self, batch: list[_Job]) -> None:
    m = self.opened
    try:
      ids = [i for job in batch for i in job.payload[0]]
      unique_ids, inverse = np.unique(np.asarray(ids, np.int64), return_inverse=True)
      dense = use.user_indices(m, unique_ids)
      scores = np.asarray(m.recommender.score_items(dense))
      self.batches += 1
      self.batched_users += len(unique_ids)
    except Exception as e:  # noqa: BLE001 (any failure goes to the waiting request)
      for job in batch:
        job.future.set_exception(e)
      return
    at = 0
    for job in batch:
      user_ids, n, min_ratings = job.payload
      rows = inverse[at:at + len(user_ids)]
      at += len(user_ids)
      _resolve(job.future, functools.partial(_entries, m, user_ids, rows, dense, scores, n,
                                             min_ratings))


def _entries(m: use.OpenedModel, user_ids, rows, dense, scores, n: int, min_ratings: int
             ) -> list[dict[str, Any]]:
  return [use.user_entry(m, uid, dense[r], scores[r], n, min_ratings)
          for uid, r in zip(user_ids, rows)]


def _resolve(future: concurrent.futures.Future, fn: Callable[[], Any]) -> None:
  try:
    future.set_result(fn())
  except Exception as e:  # noqa: BLE001 (any failure goes to the waiting request)
    future.set_exception(e)


def max_batch_users(opened: use.OpenedModel) -> int:
  """Users per batched call: as many as one compiled predict batch holds (pair models)."""
  exp = getattr(opened.recommender, "exp", None)
  if exp is None:
    return MAX_BATCH_USERS
  return int(np.clip(exp.config.train.eval_batch_size // max(opened.store.n_items, 1), 1,
                     MAX_BATCH_USERS))


def warm_up(opened: use.OpenedModel) -> dict[str, float]:
  """Runs each kind of request once so jit compilation happens before the first client."""
  timings = {}
  t0 = time.time()
  active = np.flatnonzero(opened.user_train_counts > 0)
  if len(active):
    use.recommend_users(opened, [int(opened.catalog.user_ids[active[0]])], 1)
  timings["user_top_n_s"] = time.time() - t0
  trained = np.flatnonzero(opened.trained_items)
  if len(trained):
    movie_id = int(opened.catalog.movie_ids[trained[0]])
    t0 = time.time()
    try:
      use.recommend_new_user(opened, {movie_id: opened.store.rating_range[1]}, 1)
    except use.UseError:
      pass  # the model cannot fold in: requests will get a 422 saying so
    timings["new_user_s"] = time.time() - t0
    t0 = time.time()
    try:
      use.similar_movies(opened, movie_id, 1)
    except use.UseError:
      pass
    timings["similar_s"] = time.time() - t0
  return timings


def create_app(opened: use.OpenedModel, worker: ModelWorker | None = None) -> FastAPI:
  """The FastAPI app around an opened model; every handler returns JSON."""
  from absl import logging
  worker = worker or ModelWorker(opened, max_batch_users(opened))
  started = time.time()
  counters = collections.Counter()
  app = FastAPI(title="netrec_jax recommendations",
                description=f"model {opened.model_name} restored from {opened.restore_from}")
  app.state.worker = worker

  def error(status: int, message: str) -> JSONResponse:
    counters[f"errors_{status}"] += 1
    return JSONResponse(status_code=status, content={"error": message})

  @app.exception_handler(RequestValidationError)
  async def bad_request(_: Request, exc: RequestValidationError):
    problems = exc.errors()
    invalid_json = [p for p in problems if p.get("type") == "json_invalid"]
    if invalid_json:
      detail = invalid_json[0].get("ctx", {}).get("error", invalid_json[0].get("msg"))
      return error(400, f"malformed JSON body: {detail}")
    parts = []
    for p in problems:
      where = ".".join(str(x) for x in p.get("loc", ())) or "request"
      parts.append(f"{where}: {p.get('msg')}")
    return error(422, "invalid request: " + "; ".join(parts))

  @app.exception_handler(StarletteHTTPException)
  async def http_error(_: Request, exc: StarletteHTTPException):
    return error(exc.status_code, str(exc.detail))

  @app.exception_handler(use.UseError)
  async def use_error(_: Request, exc: use.UseError):
    return error(404 if isinstance(exc, use.UnknownIdError) else 422, str(exc))

  @app.exception_handler(Exception)
  async def internal_error(request: Request, exc: Exception):
    # Only a bug lands here; say what failed rather than dropping the connection.
    logging.exception("internal error on %s %s", request.method, request.url.path)
    return error(500, f"internal error: {type(exc).__name__}: {exc}")

  async def run(future: concurrent.futures.Future) -> Any:
    return await asyncio.wrap_future(future)

  @app.get("/health")
  async def health() -> dict[str, Any]:
    return {"status": "ok", **use.header(opened), "n_users": opened.store.n_users,
            "n_items": opened.store.n_items,
            "fold_in_method": getattr(opened.recommender, "fold_in_method", None),
            "max_batch_users": worker.max_batch_users, "uptime_s": time.time() - started,
            "counters": dict(counters), "user_batches": worker.batches,
            "batched_users": worker.batched_users}

  @app.get("/users/{user_id}/recommendations")
  async def user_recommendations(user_id: int = PathParam(),
                                 n: int = Query(use.DEFAULT_N, ge=1, le=use.MAX_N),
                                 min_ratings: int = Query(1, ge=1)):
    counters["user"] += 1
    use.user_indices(opened, [user_id])  # unknown id -> 404 before queueing
    entries = await run(worker.users([user_id], n, min_ratings))
    return {**use.header(opened), "candidates": use.candidate_rule(min_ratings), **entries[0]}

  @app.post("/users/recommendations")
  async def users_recommendations(body: UsersRequest):
    counters["users"] += 1
    use.user_indices(opened, body.user_ids)
    entries = await run(worker.users(list(body.user_ids), body.n, body.min_ratings))
    return {**use.header(opened), "candidates": use.candidate_rule(body.min_ratings),
            "users": entries}

  @app.post("/new_user/recommendations")
  async def new_user_recommendations(body: NewUserRequest):
    counters["new_user"] += 1
    ratings = use.parse_new_user(body.ratings)  # validated here; the model runs on the worker
    use.movie_indices(opened, list(ratings))
    result = await run(worker.call(
        lambda: use.recommend_new_user(opened, ratings, body.n, body.min_ratings)))
    return {"candidates": use.candidate_rule(body.min_ratings), **result}

  @app.get("/movies/{movie_id}/similar")
  async def similar(movie_id: int = PathParam(),
                    n: int = Query(use.DEFAULT_N, ge=1, le=use.MAX_N),
                    min_ratings: int = Query(1, ge=1)):
    counters["similar"] += 1
    use.movie_indices(opened, [movie_id])
    result = await run(worker.call(
        lambda: use.similar_movies(opened, movie_id, n, min_ratings)))
    return {"candidates": use.candidate_rule(min_ratings, neighbours=True), **result}

  return app


def bind(host: str, port: int) -> socket.socket:
  """The service's socket, bound before the model loads: a bad or busy port fails at once,
  in one line, and the port announced is the one listened on (uvicorn would wrap 99999)."""
  if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
    raise use.UseError(f"port {port!r} is not a TCP port (1..65535)")
  try:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
  except OSError as e:
    raise use.UseError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
  return sock


def serve(config: Any, restore_from: str, *, host: str = "127.0.0.1", port: int = 8000,
          which: str = "best") -> None:
  """Restores the model once, warms it up, and serves until interrupted."""
  import uvicorn
  from absl import logging
  t0 = time.time()
  sock = bind(host, port)
  try:
    opened = use.open_model(restore_from, config, which)
    timings = warm_up(opened)
    app = create_app(opened)
  except BaseException:
    sock.close()
    raise
  logging.info("model %s restored and warmed up in %.1fs (%s); serving on http://%s:%d",
               opened.model_name, time.time() - t0,
               ", ".join(f"{k} {v:.2f}" for k, v in timings.items()), host, port)
  print(f"netrec_jax serve: {opened.model_name} from {restore_from} on http://{host}:{port} "
        "(GET /health)", flush=True)
  try:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
  finally:
    sock.close()
    app.state.worker.close()
