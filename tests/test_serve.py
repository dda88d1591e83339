"""The recommendation service, through a real HTTP client against a real server process.

`launch.py --mode=serve` runs in a subprocess on a free loopback port, restoring a tiny MF
trained here; requests go through http.client. Every bad request must be a 4xx with a clear
{"error": ...} message, never a 500.
"""

import concurrent.futures
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import tiny_config

from netrec_jax import use
from netrec_jax.train import loop

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 180


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def request(port: int, method: str, path: str, body: str | bytes | dict | None = None,
            timeout: float = 30) -> tuple[int, dict]:
  """One HTTP request; (status, decoded JSON body)."""
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
  try:
    headers = {}
    if body is not None:
      headers["Content-Type"] = "application/json"
      if isinstance(body, dict):
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")
  finally:
    conn.close()


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("serve")
  config = tiny_config(root / "stores", **{"train.epochs": 2})
  loop.train_and_evaluate(config, root / "run")
  return root / "run"


@pytest.fixture(scope="module")
def mf(mf_run):
  return use.open_model(mf_run)


@pytest.fixture(scope="module")
def server(mf_run, tmp_path_factory):
  """A launch.py --mode=serve process on a free port; killed at the end of the module."""
  port = free_port()
  log = tmp_path_factory.mktemp("serve_log") / "server.log"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as deployed
  with open(log, "w") as out:
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--mode=serve", f"--restore_from={mf_run}",
         f"--port={port}", "--host=127.0.0.1"], cwd=REPO, env=env, stdout=out,
        stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + STARTUP_TIMEOUT_S
    while True:
      if proc.poll() is not None:
        pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
      try:
        status, _ = request(port, "GET", "/health", timeout=2)
        if status == 200:
          break
      except OSError:
        pass
      if time.time() > deadline:
        pytest.fail(f"server not healthy after {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
      time.sleep(0.3)
    yield port
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def training_items(m, user: int) -> set[int]:
  train = m.split.rows("train")
  return set(np.take(m.store.item, train)[np.take(m.store.user, train) == user].tolist())


def test_health_describes_the_model(server, mf):
  status, body = request(server, "GET", "/health")
  assert status == 200 and body["status"] == "ok"
  assert body["model"] == "mf" and body["protocol"] == mf.split.protocol
  assert body["n_items"] == mf.store.n_items and "ridge" in body["fold_in_method"]


def test_user_top_n_excludes_training_movies_and_matches_the_library(server, mf):
  for user_id in mf.catalog.user_ids[::97][:5].tolist():
    status, body = request(server, "GET", f"/users/{user_id}/recommendations?n=50")
    assert status == 200, body
    assert body["user_id"] == user_id and len(body["recommendations"]) == 50
    dense = int(use.user_indices(mf, [user_id])[0])
    got = use.movie_indices(mf, [r["movie_id"] for r in body["recommendations"]])
    assert not training_items(mf, dense) & set(got.tolist())
    expected = use.recommend_users(mf, [user_id], 50)[0]["recommendations"]
    assert [r["movie_id"] for r in body["recommendations"]] == [r["movie_id"] for r in expected]


def test_several_users_in_one_request(server, mf):
  ids = mf.catalog.user_ids[:3].tolist()
  status, body = request(server, "POST", "/users/recommendations", {"user_ids": ids, "n": 4})
  assert status == 200, body
  assert [u["user_id"] for u in body["users"]] == ids
  assert all(len(u["recommendations"]) == 4 for u in body["users"])


def test_concurrent_requests_get_their_own_answers(server, mf):
  ids = mf.catalog.user_ids[:24].tolist()
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    answers = list(pool.map(lambda u: request(server, "GET", f"/users/{u}/recommendations?n=5"),
                            ids))
  for user_id, (status, body) in zip(ids, answers):
    assert status == 200 and body["user_id"] == user_id
    expected = use.recommend_users(mf, [user_id], 5)[0]["recommendations"]
    assert [r["movie_id"] for r in body["recommendations"]] == [r["movie_id"] for r in expected]


def test_new_user_top_n(server, mf):
  given = {str(int(mf.catalog.movie_ids[k])): s for k, s in ((0, 5), (4, 4.5), (8, 1))}
  status, body = request(server, "POST", "/new_user/recommendations",
                         {"ratings": given, "n": 20})
  assert status == 200, body
  assert "ridge" in body["method"] and len(body["recommendations"]) == 20
  assert not {str(r["movie_id"]) for r in body["recommendations"]} & set(given)
  pairs = [[int(k), v] for k, v in given.items()]
  status, as_pairs = request(server, "POST", "/new_user/recommendations",
                             {"ratings": pairs, "n": 20})
  assert status == 200 and as_pairs["recommendations"] == body["recommendations"]


def test_similar_movies_match_brute_force_cosine(server, mf):
  movie_id = int(mf.catalog.movie_ids[11])
  status, body = request(server, "GET", f"/movies/{movie_id}/similar?n=8")
  assert status == 200, body
  vectors = np.asarray(mf.recommender.item_vectors(), np.float64)
  unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  cosine = unit @ unit[11]
  cosine[~mf.trained_items] = -np.inf
  cosine[11] = -np.inf
  expected = np.argsort(-cosine, kind="stable")[:8]
  assert [r["movie_id"] for r in body["neighbours"]] == mf.catalog.movie_ids[expected].tolist()
  k = int(np.median(mf.train_counts))
  status, body = request(server, "GET", f"/movies/{movie_id}/similar?n=30&min_ratings={k}")
  assert status == 200 and len(body["neighbours"]) == 30
  listed = use.movie_indices(mf, [r["movie_id"] for r in body["neighbours"]])
  assert (mf.train_counts[listed] >= k).all()


@pytest.mark.parametrize("method,path,body,status,message", [
    ("GET", "/users/123456789/recommendations", None, 404, "unknown user ids [123456789]"),
    ("GET", "/users/" + "9" * 30 + "/recommendations", None, 404, "unknown user ids"),
    ("GET", "/users/abc/recommendations", None, 422, "user_id"),
    ("GET", "/users/{user}/recommendations?n=0", None, 422, "n: Input should be greater"),
    ("GET", "/users/{user}/recommendations?n=100000", None, 422, "less than or equal to 1000"),
    ("GET", "/movies/987654321/similar", None, 404, "unknown movie ids [987654321]"),
    ("GET", "/movies/{movie}/similar?n=-3", None, 422, "n: Input should be greater"),
    ("GET", "/movies/{movie}/similar?min_ratings=0", None, 422, "min_ratings"),
    ("POST", "/new_user/recommendations", '{"ratings": {"1": 5}', 400, "malformed JSON"),
    ("POST", "/new_user/recommendations", "[1, 2]", 422, "invalid request"),
    ("POST", "/new_user/recommendations", '{"ratings": {}}', 422, "at least 1"),
    ("POST", "/new_user/recommendations", '{"ratings": {"{movie}": 9}}', 422, "rating range"),
    ("POST", "/new_user/recommendations", '{"ratings": {"{movie}": "x"}}', 422, "ratings"),
    ("POST", "/new_user/recommendations", '{"ratings": {"987654321": 4}}', 404,
     "unknown movie ids [987654321]"),
    ("POST", "/new_user/recommendations", '{"ratings": {"{movie}": 4}, "n": 0}', 422, "n:"),
    ("POST", "/new_user/recommendations", '{"ratings": {"{movie}": 4}, "x": 1}', 422,
     "Extra inputs"),
    ("POST", "/users/recommendations", '{"user_ids": []}', 422, "user_ids"),
    ("POST", "/users/recommendations", '{"user_ids": [{user}, 123456789]}', 404, "123456789"),
    ("GET", "/new_user/recommendations", None, 405, "Method Not Allowed"),
    ("GET", "/nope", None, 404, "Not Found"),
])
def test_bad_requests_get_a_clear_4xx(server, mf, method, path, body, status, message):
  user, movie = int(mf.catalog.user_ids[0]), int(mf.catalog.movie_ids[0])
  fill = lambda text: text.replace("{user}", str(user)).replace("{movie}", str(movie))
  if body is not None:
    body = fill(body)
  got_status, got = request(server, method, fill(path), body)
  assert got_status == status, got
  assert message in got["error"], got


def test_server_survived_the_bad_requests(server):
  status, body = request(server, "GET", "/health")
  assert status == 200
  assert not any(k.startswith("errors_5") for k in body["counters"]), body["counters"]
