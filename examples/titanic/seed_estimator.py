"""The seed's four-step Estimator program on Titanic, with only the import changed.

    uv run python -m examples.titanic.seed_estimator [--workdir DIR]

1. an input_fn over the CSV, 2. three feature columns, 3. a LinearClassifier,
4. train 100 steps, evaluate on the held-out 30 %, predict.
"""

from __future__ import annotations

import argparse
import tempfile

import tensorflow as tf

from components import estimator  # was: tf.estimator
from examples.titanic.data import split_titanic


def make_input_fn(path, shuffle=True, epochs=None):
    def input_fn():
        titanic = tf.data.experimental.make_csv_dataset(
            str(path), batch_size=32, label_name="survived", num_epochs=epochs, shuffle=shuffle, shuffle_seed=7
        )
        titanic_batches = titanic.cache().repeat() if epochs is None else titanic
        if shuffle and epochs is None:
            titanic_batches = titanic_batches.shuffle(500, seed=7)
        return titanic_batches.prefetch(tf.data.AUTOTUNE)

    return input_fn


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workdir", default=None, help="where the split CSVs and the model go (default: a new temp dir)"
    )
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfpipe_titanic_")
    train_csv, eval_csv = split_titanic(workdir)

    age = tf.feature_column.numeric_column("age")
    cls = tf.feature_column.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])
    embark = tf.feature_column.categorical_column_with_hash_bucket("embark_town", 32)

    model = estimator.LinearClassifier(
        model_dir=f"{workdir}/model",
        feature_columns=[embark, cls, age],
        n_classes=2,
        config=estimator.RunConfig(tf_random_seed=42),
    )
    model = model.train(input_fn=make_input_fn(train_csv), steps=args.steps)
    result = model.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1))
    for key, value in result.items():
        print(key, ":", value)
    for pred in model.predict(make_input_fn(eval_csv, shuffle=False, epochs=1)):
        for key, value in pred.items():
            print(key, ":", value)
        break
    print(f"model in {workdir}/model; eval accuracy {result['accuracy']:.3f}")
    return result


if __name__ == "__main__":
    main()
