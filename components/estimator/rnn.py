"""RNN estimators (tf.estimator.experimental.RNNEstimator / RNNClassifier): a recurrent network over sequence
feature columns, the context feature columns appended to every step, and a logits layer on its last output."""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from components.errors import ConfigError
from components.estimator import heads as heads_lib
from components.estimator.estimator import Estimator
from components.estimator.mode_keys import ModeKeys
from components.estimator.optimizers import check_optimizer, make_optimizer

# tf.estimator's defaults: a named optimizer trains at 0.05 with gradients clipped to norm 5.
_DEFAULT_LEARNING_RATE = 0.05
_DEFAULT_CLIP_NORM = 5.0
_LAYERS = {"simple_rnn": tf_keras.layers.SimpleRNN, "lstm": tf_keras.layers.LSTM, "gru": tf_keras.layers.GRU}
_CELLS = {"simple_rnn": tf_keras.layers.SimpleRNNCell, "lstm": tf_keras.layers.LSTMCell, "gru": tf_keras.layers.GRUCell}
USE_DEFAULT = object()  # cell_type not given (simple_rnn, unless rnn_cell_fn makes the cells)


def _check_cells(units, cell_type, rnn_cell_fn) -> None:
    if rnn_cell_fn is not None:
        if units is not None or cell_type is not USE_DEFAULT:
            raise ConfigError("RNN estimators: give rnn_cell_fn, or units (and cell_type), not both")
        return
    if units is None:
        raise ConfigError("RNN estimators need units (the hidden units of each RNN layer) or rnn_cell_fn")
    kind = "simple_rnn" if cell_type is USE_DEFAULT else cell_type
    if isinstance(kind, str) and kind not in _CELLS:
        raise ConfigError(f"cell_type must be one of {sorted(_CELLS)} or a cell class, got {kind!r}")


def _rnn_layer(units, cell_type, rnn_cell_fn):
    """The recurrent layer: one Keras RNN layer for an int `units` and a named cell type, else an RNN over
    the cells that rnn_cell_fn makes (or one cell per entry of `units`)."""
    kind = "simple_rnn" if cell_type is USE_DEFAULT else cell_type
    if rnn_cell_fn is None and isinstance(units, int) and isinstance(kind, str):
        return _LAYERS[kind](units)
    if rnn_cell_fn is None:
        cell_class = _CELLS.get(kind, kind) if isinstance(kind, str) else kind
        sizes = [units] if isinstance(units, int) else list(units)
        cells = [cell_class(units=n) for n in sizes]
        cell = cells[0] if len(cells) == 1 else cells
    else:
        cell = rnn_cell_fn()
    return tf_keras.layers.RNN(cell)


class _RNNModel(tf_keras.Model):
    """Sequence features (with context features tiled onto each step) -> RNN (masked to each sequence's
    length) -> logits."""

    def __init__(self, rnn_layer, units, sequence_feature_columns, context_feature_columns):
        super().__init__(name="rnn_model")
        self.sequence_features = tf_keras.experimental.SequenceFeatures(sequence_feature_columns)
        self.context_features = (
            tf_keras.layers.DenseFeatures(context_feature_columns) if context_feature_columns else None
        )
        self.rnn = rnn_layer
        self.logits = tf_keras.layers.Dense(units, name="logits")

    def call(self, features, training=None):
        sequence_input, sequence_length = self.sequence_features(features, training=training)
        if self.context_features is not None:
            context = self.context_features(features, training=training)
            steps = tf.shape(sequence_input)[1]
            tiled = tf.tile(tf.expand_dims(context, 1), tf.stack([1, steps, 1]))
            sequence_input = tf.concat([sequence_input, tf.cast(tiled, sequence_input.dtype)], axis=2)
        mask = tf.sequence_mask(sequence_length, maxlen=tf.shape(sequence_input)[1])
        return self.logits(self.rnn(sequence_input, mask=mask, training=training))


class RNNEstimator(Estimator):
    """An RNN with any head (tf.estimator.experimental.RNNEstimator).

    `sequence_feature_columns` are `tf.feature_column.sequence_*` columns (wrapped in `embedding_column` or
    `indicator_column` where categorical); each example's sequence is read up to its own length.
    `units` (an int, or one int per stacked layer) with `cell_type` ("simple_rnn", "lstm", "gru", or a cell
    class), or `rnn_cell_fn()` returning a cell or a list of cells. A named optimizer trains at 0.05 with
    gradients clipped to norm 5, as tf.estimator's did. `return_sequences=True` needed tf.estimator's
    private sequential head and is refused.
    """

    def __init__(
        self,
        head,
        sequence_feature_columns,
        context_feature_columns=None,
        units=None,
        cell_type=USE_DEFAULT,
        rnn_cell_fn=None,
        return_sequences=False,
        model_dir=None,
        optimizer="Adagrad",
        config=None,
    ):
        if return_sequences:
            raise ConfigError(
                "return_sequences=True needs a sequential head (tf.estimator's was private); "
                "RNN estimators here predict from each sequence's last output"
            )
        if not sequence_feature_columns:
            raise ConfigError("RNN estimators need sequence_feature_columns (tf.feature_column.sequence_* columns)")
        _check_cells(units, cell_type, rnn_cell_fn)
        check_optimizer(optimizer)
        sequence_columns, context_columns = list(sequence_feature_columns), list(context_feature_columns or [])

        def model_fn(features, labels, mode):
            model = _RNNModel(
                _rnn_layer(units, cell_type, rnn_cell_fn), head.logits_dimension, sequence_columns, context_columns
            )
            logits = model(features, training=mode == ModeKeys.TRAIN)
            if mode != ModeKeys.TRAIN:
                return head.create_estimator_spec(features, mode, logits, labels)
            trainer = make_optimizer(optimizer, _DEFAULT_LEARNING_RATE)
            if isinstance(optimizer, str):
                trainer.clipnorm = _DEFAULT_CLIP_NORM
            trainer.iterations = tf.compat.v1.train.get_or_create_global_step()  # it advances the step
            return head.create_estimator_spec(
                features,
                mode,
                logits,
                labels,
                optimizer=trainer,
                trainable_variables=model.trainable_variables,
            )

        super().__init__(model_fn, model_dir=model_dir, config=config)


class RNNClassifier(RNNEstimator):
    """An RNN classifier (tf.estimator.experimental.RNNClassifier): binary or multi-class over sequences."""

    def __init__(
        self,
        sequence_feature_columns,
        context_feature_columns=None,
        units=None,
        cell_type=USE_DEFAULT,
        rnn_cell_fn=None,
        return_sequences=False,
        model_dir=None,
        n_classes=2,
        weight_column=None,
        label_vocabulary=None,
        optimizer="Adagrad",
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        sequence_mask="sequence_mask",
        config=None,
    ):
        head: heads_lib.Head
        if n_classes == 2:
            head = heads_lib.BinaryClassHead(
                weight_column=weight_column, label_vocabulary=label_vocabulary, loss_reduction=loss_reduction
            )
        else:
            head = heads_lib.MultiClassHead(
                n_classes, weight_column=weight_column, label_vocabulary=label_vocabulary, loss_reduction=loss_reduction
            )
        self.sequence_mask = sequence_mask  # the mask's feature key of a sequential head (return_sequences)
        super().__init__(
            head,
            sequence_feature_columns,
            context_feature_columns,
            units,
            cell_type,
            rnn_cell_fn,
            return_sequences,
            model_dir,
            optimizer,
            config,
        )
