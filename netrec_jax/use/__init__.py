"""Using a trained model: top-N lists, a new user's top-N, similar movies, embedding analysis.

Every mode starts from a training run's checkpoint (`launch.py --mode=recommend|similar|
analyze|serve --restore_from=WORKDIR`). `open_model` reads the model name from the checkpoint's
saved config, restores it through its family (netrec_jax/train/family.py) and loads the
catalog once; the mode functions below take either a WORKDIR or that opened model, so the
service (netrec_jax/serve.py), the launcher and tests share one code path.

Ids are the dataset's ORIGINAL user and movie ids (Netflix / MovieLens), mapped to dense
indices through the store (ids that were never rated, or that the data filters removed, are
reported by name). Candidates for a top-N list are the movies with training ratings in the
run's split, minus the ones the user rated in training (or, for a new user, the given ones):
a movie without training ratings still has its random initial embedding.
The package, by concern: model.py (open a run, ids, parsing), recommend.py (top-N, new users,
similar movies), analyze.py (plots), format.py (console and JSON output).
"""

from netrec_jax.use.analyze import analyze
from netrec_jax.use.format import format_table, to_json
from netrec_jax.use.model import (DEFAULT_N, MAX_N, Catalog, OpenedModel, UnknownIdError, UseError,
                                  check_n, checkpoint_meta, header, movie_indices, open_model,
                                  parse_ids, parse_new_user, user_indices)
from netrec_jax.use.recommend import (candidate_rule, recommend, recommend_new_user,
                                      recommend_users, similar, similar_movies, top_n,
                                      user_entry)

__all__ = ["DEFAULT_N", "MAX_N", "Catalog", "OpenedModel", "UnknownIdError", "UseError",
           "analyze", "candidate_rule", "check_n", "checkpoint_meta", "format_table", "header",
           "movie_indices", "open_model", "parse_ids", "parse_new_user", "recommend",
           "recommend_new_user", "recommend_users", "similar", "similar_movies", "to_json",
           "top_n", "user_entry", "user_indices"]
