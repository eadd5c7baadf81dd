"""MovieLens 100K and 1M in the project's interaction schema.

The adapters read the GroupLens files as published (never copied into the repository) and
produce interaction records with every key of `recs.features.RAW_FEATURE_DTYPES`, so the
tf.Transform preprocessing, the TFX pipeline and the benchmarks run on them unchanged.

How the fields map (MovieLens has ratings, not plays):

| schema field          | MovieLens 100K                       | MovieLens 1M (fallback ratings) |
|-----------------------|--------------------------------------|---------------------------------|
| user_id               | "u<UserID>"                          | "u<UserID>"                     |
| age                   | age in years                         | age-group code (1, 18, ..., 56) |
| country               | "US-<first zip digit>" (zip region)  | same                            |
| subscription_tier     | occupation: the one categorical      | occupation code                 |
|                       | segment the data has                 |                                 |
| preferred_genres      | the user's 3 most-rated genres in    | "" (items cannot be joined to   |
|                       | the reference (training) ratings     | genres)                         |
| history               | the user's reference ratings before  | 300 of the user's other         |
|                       | this one, most recent first, <= 300  | reference titles, drawn at      |
|                       | (the towers read the first 30)       | random (seeded)                 |
| device_type, hour     | "web"; UTC hour of the rating        | "web"; 0 (no timestamps)        |
| title_id              | the movie title (the TFRS protocol's | "i<item_idx>" (opaque)          |
|                       | item id: duplicate titles collapse)  |                                 |
| genre                 | first listed genre                   | "unknown"                       |
| description           | title words and every genre name     | ""                              |
| release_year          | from the release date; missing ->    | 0                               |
|                       | the catalogue's median year          |                                 |
| popularity            | reference ratings per day            | reference ratings per title     |
|                       |                                      | (no time span)                  |
| duration_seconds      | 6000, a nominal feature length       | 6000                            |

Outcomes: an explicit rating r in 1..5 becomes watch_ratio = r / 5, watch_seconds =
watch_ratio * 6000, liked = r >= 4, skipped = r <= 2, completed = r >= 3, and the label
engaged = r >= 4 (the ranker's positive: the user liked the film). Which ratings count as
retrieval positives is the protocol's decision, made by the benchmark: the TFRS protocol counts
every rating, RecBole's counts r >= 3.

Example:
    data = read_ml100k("../shared/data/movielens-100k")
    records = interaction_records(data, np.arange(data.num_ratings), reference=train_rows)
"""

import collections
import csv
import dataclasses
import datetime
import os

import numpy as np

from recs.contract import features as F
from recs.types import JsonDict

NOMINAL_DURATION_SECONDS = 6000
TOP_GENRES = 3


@dataclasses.dataclass(frozen=True)
class MovieLens:
    """Ratings as parallel arrays plus user and title attributes.

    Attributes:
        users: `[num_ratings]` user ids ("u<UserID>").
        titles: `[num_ratings]` title ids.
        ratings: `[num_ratings]` int ratings 1..5.
        timestamps: `[num_ratings]` Unix seconds (0 when the data has none).
        profiles: user id -> raw profile fields (age, country, subscription_tier).
        catalogue: title id -> raw title fields (genre, genres, release_year, description).
    """

    name: str
    users: np.ndarray
    titles: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    profiles: dict[str, JsonDict]
    catalogue: dict[str, JsonDict]

    @property
    def num_ratings(self) -> int:
        return len(self.ratings)


def _region(zip_code: str) -> str:
    return f"US-{zip_code[0]}" if zip_code[:1].isdigit() else "US-?"


def _check_dir(directory: str, required: tuple[str, ...]) -> None:
    missing = [name for name in required if not os.path.exists(os.path.join(directory, name))]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {missing}; point it at the folder holding "
                                f"the GroupLens files (see its SOURCE.md).")


def read_ml100k(directory: str) -> MovieLens:
    """Reads `u.data`, `u.user`, `u.item` and `u.genre` of MovieLens 100K.

    Raises:
        FileNotFoundError: a file is missing.
    """
    _check_dir(directory, ("u.data", "u.user", "u.item", "u.genre"))
    with open(os.path.join(directory, "u.genre"), encoding="latin-1") as handle:
        genres = [line.split("|")[0] for line in handle if line.strip()]
    profiles = {}
    with open(os.path.join(directory, "u.user"), encoding="latin-1") as handle:
        for line in handle:
            user, age, _gender, occupation, zip_code = line.rstrip("\n").split("|")
            profiles[f"u{user}"] = {F.AGE: int(age), F.COUNTRY: _region(zip_code),
                                    F.SUBSCRIPTION_TIER: occupation}
    item_title: dict[str, str] = {}
    catalogue: dict[str, JsonDict] = {}
    with open(os.path.join(directory, "u.item"), encoding="latin-1") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("|")
            item, title, released, flags = fields[0], fields[1], fields[2], fields[5:]
            item_title[item] = title
            names = [genre for genre, flag in zip(genres, flags) if flag == "1"] or ["unknown"]
            year = (datetime.datetime.strptime(released, "%d-%b-%Y").year if released else 0)
            # Titles that occur twice collapse into one item, as in the TFRS protocol; the
            # first row's metadata stands for both.
            catalogue.setdefault(title, {
                F.TITLE_ID: title, F.GENRE: names[0], "genres": names, F.RELEASE_YEAR: year,
                F.DESCRIPTION: " ".join([title.rsplit("(", 1)[0].strip(), *names])})
    known_years = [row[F.RELEASE_YEAR] for row in catalogue.values() if row[F.RELEASE_YEAR]]
    median_year = int(np.median(known_years))
    for row in catalogue.values():
        row[F.RELEASE_YEAR] = row[F.RELEASE_YEAR] or median_year
    data = np.loadtxt(os.path.join(directory, "u.data"), dtype=np.int64)
    return MovieLens(name="ml-100k",
                     users=np.array([f"u{u}" for u in data[:, 0]], dtype=object),
                     titles=np.array([item_title[str(i)] for i in data[:, 1]], dtype=object),
                     ratings=data[:, 2], timestamps=data[:, 3], profiles=profiles,
                     catalogue=catalogue)


def read_ml1m(directory: str) -> MovieLens:
    """Reads MovieLens 1M: the fallback ratings (no timestamps, opaque items) and `users.dat`.

    Raises:
        FileNotFoundError: a file is missing.
    """
    ratings_file = os.path.join("ratings-without-timestamps", "ratings_user_item_rating.csv")
    _check_dir(directory, (ratings_file, "users.dat"))
    profiles = {}
    with open(os.path.join(directory, "users.dat"), encoding="latin-1") as handle:
        for line in handle:
            user, _gender, age, occupation, zip_code = line.rstrip("\n").split("::")
            profiles[f"u{user}"] = {F.AGE: int(age), F.COUNTRY: _region(zip_code),
                                    F.SUBSCRIPTION_TIER: f"occupation-{occupation}"}
    with open(os.path.join(directory, ratings_file)) as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = np.array([[int(v) for v in row] for row in reader], dtype=np.int64)
    titles = np.array([f"i{i}" for i in rows[:, 1]], dtype=object)
    catalogue = {title: {F.TITLE_ID: title, F.GENRE: "unknown", "genres": [],
                         F.RELEASE_YEAR: 0, F.DESCRIPTION: ""} for title in np.unique(titles)}
    return MovieLens(name="ml-1m", users=np.array([f"u{u}" for u in rows[:, 0]], dtype=object),
                     titles=titles, ratings=rows[:, 2],
                     timestamps=np.zeros(len(rows), dtype=np.int64), profiles=profiles,
                     catalogue=catalogue)


def _preferred_genres(data: MovieLens, reference: np.ndarray) -> dict[str, str]:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for user, title in zip(data.users[reference], data.titles[reference]):
        counts[user].update(data.catalogue[title]["genres"])
    return {user: "|".join(genre for genre, _ in counter.most_common(TOP_GENRES))
            for user, counter in counts.items()}


def _popularity(data: MovieLens, reference: np.ndarray) -> dict[str, float]:
    counts = collections.Counter(data.titles[reference].tolist())
    stamps = data.timestamps[reference]
    days = max(1.0, (stamps.max() - stamps.min()) / 86400) if stamps.any() else 1.0
    return {title: count / days for title, count in counts.items()}


def _histories(data: MovieLens, rows: np.ndarray, reference: np.ndarray) -> list[str]:
    by_user: dict[str, np.ndarray] = {}
    users = data.users[reference]
    order = np.lexsort((data.timestamps[reference], users))
    sorted_reference = reference[order]
    bounds = np.flatnonzero(users[order][1:] != users[order][:-1]) + 1
    for group in np.split(sorted_reference, bounds) if len(reference) else []:
        by_user[data.users[group[0]]] = group
    rng = np.random.default_rng(0)
    histories = []
    for index in rows:
        earlier = by_user.get(data.users[index], reference[:0])
        title = data.titles[index]
        if data.timestamps[index]:
            # Time order known: the reference ratings strictly before this one.
            stamps = data.timestamps[earlier]
            earlier = earlier[:np.searchsorted(stamps, data.timestamps[index], side="left")]
            picked = [t for t in data.titles[earlier[::-1]] if t != title][:F.MAX_WATCHED]
        else:
            # No timestamps: a seeded sample of the user's other reference titles.
            others = earlier[data.titles[earlier] != title]
            count = min(F.MAX_WATCHED, len(others))
            picked = list(data.titles[rng.choice(others, count, replace=False)])
        histories.append("|".join(picked))
    return histories


def catalogue_rows(data: MovieLens, reference: np.ndarray) -> list[JsonDict]:
    """One raw candidate-feature row per title, popularity from the `reference` ratings."""
    popularity = _popularity(data, reference)
    return [{key: row[key] for key in F.CANDIDATE_FEATURES if key != F.POPULARITY}
            | {F.POPULARITY: popularity.get(title, 0.0)}
            for title, row in data.catalogue.items()]


def catalogue_records(data: MovieLens, reference: np.ndarray) -> list[JsonDict]:
    """One full interaction record per catalogue title, for embedding every candidate.

    The candidate features are the title's; the user, context and outcome fields are
    neutral placeholders that the candidate tower never reads.
    """
    placeholder = {F.USER_ID: "", F.AGE: 0, F.COUNTRY: "", F.SUBSCRIPTION_TIER: "",
                   F.PREFERRED_GENRES: "", F.HISTORY: "", F.DEVICE_TYPE: "web", F.HOUR: 0,
                   F.TIMESTAMP: 0, F.DURATION_SECONDS: NOMINAL_DURATION_SECONDS,
                   F.WATCH_SECONDS: 0.0, F.WATCH_RATIO: 0.0, F.LIKED: 0, F.SKIPPED: 0,
                   F.COMPLETED: 0, F.LABEL: 0}
    return [placeholder | row for row in catalogue_rows(data, reference)]


def interaction_records(data: MovieLens, rows: np.ndarray, reference: np.ndarray
                        ) -> list[JsonDict]:
    """Interaction records for the ratings at `rows`.

    Args:
        data: the dataset.
        rows: indices of the ratings to convert.
        reference: indices of the ratings that derived features (preferred genres,
            popularity) may look at: the training split, so test ratings never leak into
            features.

    Returns:
        Dicts keyed like `recs.features.RAW_FEATURE_DTYPES`.
    """
    preferred = _preferred_genres(data, reference)
    popularity = _popularity(data, reference)
    histories = _histories(data, rows, reference)
    records = []
    for index, history in zip(rows, histories):
        user, title = data.users[index], data.titles[index]
        rating, stamp = int(data.ratings[index]), int(data.timestamps[index])
        profile, item = data.profiles[user], data.catalogue[title]
        ratio = rating / 5.0
        records.append({
            F.USER_ID: user, F.AGE: profile[F.AGE], F.COUNTRY: profile[F.COUNTRY],
            F.SUBSCRIPTION_TIER: profile[F.SUBSCRIPTION_TIER],
            F.PREFERRED_GENRES: preferred.get(user, ""), F.HISTORY: history,
            F.DEVICE_TYPE: "web",
            F.HOUR: (stamp // 3600) % 24, F.TIMESTAMP: stamp, F.TITLE_ID: title,
            F.GENRE: item[F.GENRE], F.RELEASE_YEAR: item[F.RELEASE_YEAR],
            F.POPULARITY: popularity.get(title, 0.0), F.DESCRIPTION: item[F.DESCRIPTION],
            F.DURATION_SECONDS: NOMINAL_DURATION_SECONDS,
            F.WATCH_SECONDS: ratio * NOMINAL_DURATION_SECONDS, F.WATCH_RATIO: ratio,
            F.LIKED: int(rating >= 4), F.SKIPPED: int(rating <= 2),
            F.COMPLETED: int(rating >= 3), F.LABEL: int(rating >= 4),
        })
    return records


def write_movielens(dataset: str, data_dir: str, raw_dir: str, examples_dir: str,
                    max_ratings: int = 0, seed: int = 42) -> int:
    """Writes MovieLens as the pipeline's inputs: interaction tf.Examples (one span folder,
    `snapshot`), `users.jsonl` and `titles.jsonl`.

    Derived features (preferred genres, popularity, history) look at every written rating:
    this is the operational path. The quality benchmarks, which must not leak test ratings,
    derive them from their training split instead.

    Args:
        dataset: "ml-100k" or "ml-1m".
        data_dir: the folder of the GroupLens files.
        raw_dir: receives users.jsonl and titles.jsonl.
        examples_dir: receives `snapshot/interactions-00000-of-00001.tfrecord.gz`.
        max_ratings: keep a seeded random subset of this many ratings (0 = all).
        seed: the subset's seed.

    Returns:
        The number of interaction records written.

    Raises:
        ValueError: an unknown dataset.
    """
    readers = {"ml-100k": read_ml100k, "ml-1m": read_ml1m}
    if dataset not in readers:
        raise ValueError(f"dataset must be one of {sorted(readers)}; received {dataset!r}.")
    return write_pipeline_inputs(readers[dataset](str(data_dir)), raw_dir, examples_dir,
                                 max_ratings, seed)


def write_pipeline_inputs(data: MovieLens, raw_dir: str, examples_dir: str,
                          max_ratings: int = 0, seed: int = 42) -> int:
    """Writes ratings as the pipeline's inputs: interaction tf.Examples (one span folder,
    `snapshot`), `users.jsonl` and `titles.jsonl`; derived features look at every written
    rating. Returns the number of interaction records written."""
    import json
    import pathlib

    import tensorflow as tf

    from recs.features import to_example

    rows = np.arange(data.num_ratings)
    if max_ratings:
        rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_ratings])
    records = interaction_records(data, rows, reference=rows)
    # One folder, read as one span: the ratings are a snapshot, not daily deliveries.
    snapshot = pathlib.Path(examples_dir) / "snapshot"
    snapshot.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(snapshot / "interactions-00000-of-00001.tfrecord.gz"),
                              options) as writer:
        for record in records:
            writer.write(to_example(record))
    raw = pathlib.Path(raw_dir)
    raw.mkdir(parents=True, exist_ok=True)
    preferred = {r[F.USER_ID]: r[F.PREFERRED_GENRES] for r in records}
    with open(raw / "users.jsonl", "w") as handle:
        for user, profile in data.profiles.items():
            handle.write(json.dumps({F.USER_ID: user, **profile,
                                     F.PREFERRED_GENRES: preferred.get(user, "")}) + "\n")
    with open(raw / "titles.jsonl", "w") as handle:
        for row in catalogue_rows(data, rows):
            handle.write(json.dumps(row) + "\n")
    return len(records)
