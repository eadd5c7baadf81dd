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
