"""Names that cross the model-server boundary: signatures, their inputs and output keys.

Every served model takes raw features keyed by `recs.contract.features` names, `[batch_size]`
each (the tf.Transform graph is inside the SavedModel):

| model            | signature            | inputs                          | outputs                        |
|------------------|----------------------|---------------------------------|--------------------------------|
| towers           | serving_default,     | QUERY_FEATURES                  | embedding [batch, dim]         |
|                  | query_embedding      |                                 |                                |
|                  | candidate_embedding  | CANDIDATE_FEATURES              | embedding [batch, dim]         |
| retrieval,       | serving_default      | QUERY_FEATURES                  | title_ids, scores [batch, k],  |
| retrieval_exact  |                      |                                 | query_embedding [batch, dim]   |
| ranker           | serving_default      | RANKER_FEATURES                 | probability [batch]            |
|                  | serving_tf_example   | examples: serialized tf.Example | probability [batch]            |
| recommender,     | recommend            | QUERY_FEATURES [1],             | title_ids, probability,        |
| recommender_exact|                      | excluded_title_ids [E]          | retrieval_score [C] (by P),    |
|                  |                      |                                 | query_embedding [1, dim]       |
|                  | rank_candidates      | QUERY_FEATURES [1],             | probability [N], found [N]     |
|                  |                      | title_ids [N]                   |                                |

The recommender's two signatures take one query and many titles, so their inputs do not share
a batch dimension: a server must not batch them across requests (TF Serving batches a model
only when its directory holds `batching_params.pbtxt`, with
`--enable_per_model_batching_parameters`; the recommender has none).
"""

SERVING_DEFAULT = "serving_default"
QUERY_EMBEDDING = "query_embedding"
CANDIDATE_EMBEDDING = "candidate_embedding"
SERVING_TF_EXAMPLE = "serving_tf_example"

EXAMPLES = "examples"
"""Input of `serving_tf_example`: `[batch_size]` serialized tf.Examples."""

EMBEDDING = "embedding"
PROBABILITY = "probability"
TITLE_IDS = "title_ids"
SCORES = "scores"
QUERY_EMBEDDING_OUTPUT = "query_embedding"
"""Retrieval's third output: the embedding the index was searched with (fresh titles are
scored against it)."""
RECOMMEND = "recommend"
RANK_CANDIDATES = "rank_candidates"
EXCLUDED_TITLE_IDS = "excluded_title_ids"
"""`recommend`'s titles never to return (finished, taken down)."""
CANDIDATE_TITLE_IDS = "title_ids"
"""`rank_candidates`' titles to score (the same name as retrieval's output)."""
RETRIEVAL_SCORE = "retrieval_score"
FOUND = "found"
"""`rank_candidates`: False for a title the model's catalogue snapshot does not hold (its
probability is 0: score such titles from their features with the ranker's serving_default)."""
