"""Load test of the recommendation service: requests/s and p50/p99 latency per endpoint.

  python launch.py --experiment=quickstart --workdir=runs/quickstart      # a checkpoint first
  python benchmarks/serve_load_test.py --restore_from=runs/quickstart --out=bench_out/serve

Starts a real server process (`launch.py --mode=serve`) on a free loopback port, waits for
/health, then, endpoint by endpoint, runs --clients concurrent clients (threads, each with its
own keep-alive HTTP/1.1 connection) until --requests requests are done or --max_seconds have
passed, whichever comes first. Bounded in count and time, loopback only; the server is killed
at the end whatever happens.

Endpoints: user top-N (GET /users/{id}/recommendations, random users with training ratings),
new-user top-N (POST /new_user/recommendations, 5 random movies with random stars), similar
(GET /movies/{id}/similar, random movies) and health. Latency is client-side wall time per
request (connect excluded after the first, response fully read). Reported per endpoint:
requests/s over the endpoint's wall time, p50/p99/max latency, non-200 count. The server's
/health afterwards says how many batched score_items calls served the user requests.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from absl import app, flags

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_RESTORE_FROM = flags.DEFINE_string("restore_from", "runs/quickstart",
                                    "Workdir of a training run to serve.")
_OUT = flags.DEFINE_string("out", None, "Folder for serve_load_test.json (optional).")
_CLIENTS = flags.DEFINE_integer("clients", 4, "Concurrent clients per endpoint.")
_REQUESTS = flags.DEFINE_integer("requests", 1000, "Requests per endpoint at most.")
_MAX_SECONDS = flags.DEFINE_float("max_seconds", 20.0, "Seconds per endpoint at most.")
_N = flags.DEFINE_integer("n", 10, "Top-N / neighbours per request.")
_STARTUP_TIMEOUT = flags.DEFINE_float("startup_timeout", 300.0,
                                      "Seconds to wait for the server's /health.")
_ENDPOINTS = flags.DEFINE_list("endpoints", ["user", "new_user", "similar", "health"],
                               "Which endpoints to load.")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def get_json(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict]:
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
  try:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, json.loads(response.read())
  finally:
    conn.close()


def start_server(restore_from: str, port: int, log_path: Path) -> subprocess.Popen:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  with open(log_path, "w") as log:
    return subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "--mode=serve",
         f"--restore_from={restore_from}", f"--port={port}", "--host=127.0.0.1"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(proc: subprocess.Popen, port: int, timeout: float, log_path: Path) -> dict:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f"server exited with {proc.returncode}:\n"
                         f"{log_path.read_text()[-3000:]}")
    try:
      status, body = get_json(port, "/health", timeout=2)
      if status == 200:
        return body
    except OSError:
      pass
    time.sleep(0.3)
  raise RuntimeError(f"server not healthy after {timeout:.0f}s:\n{log_path.read_text()[-3000:]}")


def request_factory(endpoint: str, users: list[int], movies: list[int], n: int, seed: int):
  """A function () -> (method, path, body) drawing random valid requests for `endpoint`."""
  rng = random.Random(seed)
  if endpoint == "user":
    return lambda: ("GET", f"/users/{rng.choice(users)}/recommendations?n={n}", None)
  if endpoint == "similar":
    return lambda: ("GET", f"/movies/{rng.choice(movies)}/similar?n={n}", None)
  if endpoint == "new_user":
    def new_user():
      given = {str(m): rng.choice([1, 2, 3, 4, 5]) for m in rng.sample(movies, 5)}
      return "POST", "/new_user/recommendations", json.dumps({"ratings": given, "n": n})
    return new_user
  if endpoint == "health":
    return lambda: ("GET", "/health", None)
  raise ValueError(f"unknown endpoint {endpoint!r}")


def load(port: int, endpoint: str, users: list[int], movies: list[int], clients: int,
         max_requests: int, max_seconds: float, n: int) -> dict:
  """Runs `clients` keep-alive clients until max_requests are done or max_seconds pass."""
  lock = threading.Lock()
  issued = [0]
  latencies: list[float] = []
  statuses: dict[int, int] = {}
  deadline = time.perf_counter() + max_seconds

  def client(k: int) -> None:
    make = request_factory(endpoint, users, movies, n, seed=k)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
      while time.perf_counter() < deadline:
        with lock:
          if issued[0] >= max_requests:
            return
          issued[0] += 1
        method, path, body = make()
        headers = {"Content-Type": "application/json"} if body else {}
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - t0
        with lock:
          latencies.append(elapsed)
          statuses[response.status] = statuses.get(response.status, 0) + 1
    finally:
      conn.close()

  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    for future in [pool.submit(client, k) for k in range(clients)]:
      future.result()
  wall = time.perf_counter() - t0
  ms = sorted(1000 * x for x in latencies)
  pct = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")
  return {"endpoint": endpoint, "clients": clients, "requests": len(ms),
          "seconds": wall, "requests_per_s": len(ms) / wall if wall > 0 else float("nan"),
          "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": ms[-1] if ms else float("nan"),
          "non_200": sum(c for s, c in statuses.items() if s != 200),
          "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def main(argv):
  del argv
  from netrec_jax import use
  restore_from = str(Path(_RESTORE_FROM.value).resolve())
  # Valid ids to draw from, read from the run's store (as the server will).
  opened = use.open_model(restore_from)
  users = opened.catalog.user_ids[opened.user_train_counts > 0].tolist()
  movies = opened.catalog.movie_ids[opened.trained_items].tolist()
  del opened

  port = free_port()
  out = Path(_OUT.value) if _OUT.value else None
  if out:
    out.mkdir(parents=True, exist_ok=True)
  log_path = (out or Path("/tmp")) / f"serve_load_test_server_{port}.log"
  t0 = time.time()
  proc = start_server(restore_from, port, log_path)
  try:
    health = wait_healthy(proc, port, _STARTUP_TIMEOUT.value, log_path)
    startup_s = time.time() - t0
    results = []
    for endpoint in _ENDPOINTS.value:
      r = load(port, endpoint, users, movies, _CLIENTS.value, _REQUESTS.value,
               _MAX_SECONDS.value, _N.value)
      results.append(r)
      print(f"{endpoint:>9}: {r['requests']:5d} requests in {r['seconds']:5.1f}s, "
            f"{r['requests_per_s']:7.1f} req/s, p50 {r['p50_ms']:6.2f} ms, "
            f"p99 {r['p99_ms']:6.2f} ms, non-200 {r['non_200']}", flush=True)
    _, after = get_json(port, "/health")
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()

  summary = {"restore_from": restore_from, "model": health["model"],
             "store": health["store"], "n_users": health["n_users"],
             "n_items": health["n_items"], "server_startup_s": startup_s,
             "max_batch_users": health["max_batch_users"], "cpu_count": os.cpu_count(),
             "user_batches": after["user_batches"], "batched_users": after["batched_users"],
             "results": results}
  print(f"server: {health['model']} on {health['store']} ({health['n_items']} movies), "
        f"ready in {startup_s:.1f}s; user requests served by {after['user_batches']} batched "
        f"score_items calls for {after['batched_users']} users")
  print("\n| endpoint | clients | requests | req/s | p50 ms | p99 ms | non-200 |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  for r in results:
    print(f"| {r['endpoint']} | {r['clients']} | {r['requests']} | {r['requests_per_s']:.1f} | "
          f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_200']} |")
  if out:
    (out / "serve_load_test.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten {out / 'serve_load_test.json'}")
  if any(r["non_200"] for r in results):
    sys.exit("some requests failed (non-200): see the statuses above")


if __name__ == "__main__":
  app.run(main)
