"""Gradient-boosted trees (tf.estimator.BoostedTreesClassifier / Regressor / Estimator), grown with TF ops.

TF 2.21 still ships the BoostedTrees* kernels, but their ensemble lives in a resource that only
private Python wrappers can checkpoint. Here the ensemble is a set of plain variables, so it is
saved, restored, warm-started and exported like every other premade model:

- each tree is a complete binary tree of 2^(max_depth+1) - 1 nodes in heap order (node n's
  children are 2n+1 and 2n+2); `node_feature` is the split feature (-1: a leaf), `node_threshold`
  the split bucket (bucket <= threshold goes left), `node_value` the logits a leaf gives;
- features are bucket ids, made in the tf.data map: a bucketized column gives one feature per
  dimension, an indicator column one 0/1 feature per category;
- training grows one layer at a time, as tf.estimator did: for `n_batches_per_layer` batches it
  adds up the gradients and hessians of the loss (with respect to the logits) per (node, feature,
  bucket), then splits every node of the layer at its best gain, and the children's values are
  the parent's plus `learning_rate` times their Newton step -G / (H + l2). With `center_bias`,
  Newton steps on a bias come first, until a step is smaller than 0.01. Training stops when
  `n_trees` trees are complete.
"""

from __future__ import annotations

import collections
import numbers

import numpy as np
import tensorflow as tf

from components.errors import ConfigError
from components.estimator import heads as heads_lib
from components.estimator._compat import fc2
from components.estimator._features import _Resources, transformation_cache, validate_columns
from components.estimator.hooks import SessionRunHook
from components.estimator.mode_keys import ModeKeys
from components.estimator.premade import Part, PremadeEstimator, _scaffold
from components.estimator.spec import EstimatorSpec

PART = "boosted_trees"
_CENTERING_EPSILON = 0.01
_PRUNING_MODES = ("none", "pre")


class TreeFeatures:
    """Raw features -> int32 [batch, n_features] of bucket ids (the tf.data map's share of the work)."""

    def __init__(self, feature_columns):
        self.columns = sorted(validate_columns(feature_columns), key=lambda c: c.name)
        self.resources = _Resources()
        self.names, self.buckets = [], []  # per feature: its column's name, its number of buckets
        for col in self.columns:
            if isinstance(col, fc2.BucketizedColumn):
                width = col.source_column.variable_shape.num_elements()
                self.names += [col.name] * width
                self.buckets += [len(col.boundaries) + 1] * width
            elif isinstance(col, fc2.IndicatorColumn):
                width = col.categorical_column.num_buckets
                self.names += [col.name] * width
                self.buckets += [2] * width
            else:
                raise ConfigError(
                    f"boosted trees take bucketized_column and indicator_column feature columns; {col.name!r} is "
                    f"{type(col).__name__}. Bucketize a numeric column with tf.feature_column.bucketized_column"
                    "(column, boundaries), and wrap a categorical one in tf.feature_column.indicator_column"
                )

    def __call__(self, features):
        cache = transformation_cache(self.columns, features)
        out = []
        for col in self.columns:
            if isinstance(col, fc2.BucketizedColumn):
                ids = cache.get(col, self.resources)
                out.append(tf.reshape(tf.cast(ids, tf.int32), [-1, col.source_column.variable_shape.num_elements()]))
            else:
                hot = col.get_dense_tensor(cache, self.resources)
                out.append(tf.cast(hot > 0, tf.int32))
        return tf.concat(out, axis=1) if len(out) > 1 else out[0]


def _soft(g, l1):
    """G shrunk towards 0 by l1 (the L1 penalty's effect on a Newton step)."""
    return tf.sign(g) * tf.maximum(tf.abs(g) - l1, 0.0) if l1 else g


class TreeEnsemble(tf.Module):
    """The trees, the bias and the growing state, all variables (see the module docstring)."""

    def __init__(
        self,
        buckets,
        units: int,
        n_trees: int,
        max_depth: int,
        learning_rate: float,
        l1: float,
        l2: float,
        tree_complexity: float,
        min_node_weight: float,
        center_bias: bool,
        pruning_mode: str,
        n_batches_per_layer: int,
    ):
        super().__init__(name=PART)
        self.n_trees, self.depth, self.units = n_trees, max_depth, units
        self.learning_rate, self.l1, self.l2 = learning_rate, l1, l2
        self.tree_complexity, self.min_node_weight, self.pruning_mode = tree_complexity, min_node_weight, pruning_mode
        self.n_batches_per_layer = n_batches_per_layer
        self.n_features, self.max_buckets = len(buckets), max(buckets)
        nodes, layer_nodes = 2 ** (max_depth + 1) - 1, 2 ** (max_depth - 1)
        # A threshold b is a candidate where bucket b + 1 exists for that feature.
        self._candidates = tf.constant(np.arange(self.max_buckets)[None, :] < np.array(buckets)[:, None] - 1)

        def var(value, name):
            return tf.Variable(value, trainable=False, name=name)

        self.node_feature = var(tf.fill([n_trees, nodes], -1), "node_feature")
        self.node_threshold = var(tf.zeros([n_trees, nodes], tf.int32), "node_threshold")
        self.node_value = var(tf.zeros([n_trees, nodes, units]), "node_value")
        self.node_gain = var(tf.zeros([n_trees, nodes]), "node_gain")
        self.bias = var(tf.zeros([units]), "bias")
        self.finalized_trees = var(tf.constant(0), "finalized_trees")
        self.layer = var(tf.constant(0), "layer")  # the layer of tree `finalized_trees` being grown
        self.centering = var(tf.constant(bool(center_bias)), "centering")
        self.batches = var(tf.constant(0), "batches")  # batches summed into the statistics below
        stats = [layer_nodes, self.n_features, self.max_buckets, units]
        self.grad_stats = var(tf.zeros(stats), "grad_stats")
        self.hess_stats = var(tf.zeros(stats), "hess_stats")
        self.bias_stats = var(tf.zeros([2, units]), "bias_stats")

    # ---- prediction ---------------------------------------------------------------------------

    def _walk(self, x, feature, threshold, steps):
        """The node each example reaches in each tree: feature/threshold [T, N], x [batch, F] -> [T, batch]."""
        node = tf.zeros([tf.shape(feature)[0], tf.shape(x)[0]], tf.int32)
        path = []
        for _ in range(steps):
            f = tf.gather(feature, node, batch_dims=1)
            thr = tf.gather(threshold, node, batch_dims=1)
            value = tf.transpose(tf.gather(x, tf.transpose(tf.maximum(f, 0)), batch_dims=1))
            child = 2 * node + 1 + tf.cast(value > thr, tf.int32)
            path.append((node, f))
            node = tf.where(f >= 0, child, node)
        return node, path

    def __call__(self, x, training=False):
        node, _ = self._walk(x, self.node_feature, self.node_threshold, self.depth)
        return self.bias + tf.reduce_sum(tf.gather(self.node_value, node, batch_dims=1), axis=0)

    def explain(self, x):
        """Per example: the logits after the bias and after each split on its path, and the split features.

        Returns (logits_path [batch, 1 + T*D, units], feature_ids [batch, T*D]; -1 where a path ended).
        """
        node, path = self._walk(x, self.node_feature, self.node_threshold, self.depth)
        values = [tf.gather(self.node_value, n, batch_dims=1) for n, _ in path[1:]]
        values.append(tf.gather(self.node_value, node, batch_dims=1))  # [T, batch, units] after each step
        steps = tf.stack(values, axis=1)  # [T, D, batch, units]: the tree's value after its d-th split
        before = tf.concat([tf.zeros_like(steps[:, :1]), steps[:, :-1]], axis=1)
        deltas = tf.reshape(tf.transpose(steps - before, [2, 0, 1, 3]), [tf.shape(x)[0], -1, self.units])
        logits_path = self.bias + tf.concat([tf.zeros_like(deltas[:, :1]), tf.cumsum(deltas, axis=1)], axis=1)
        features = tf.reshape(tf.transpose(tf.stack([f for _, f in path], axis=1), [2, 0, 1]), [tf.shape(x)[0], -1])
        return logits_path, features

    # ---- growing ------------------------------------------------------------------------------

    def update(self, x, gradients, hessians):
        """One batch of growing: bias centering, else statistics for the current layer (and the split)."""

        def grow():
            return tf.cond(
                self.finalized_trees < self.n_trees,
                lambda: self._grow(x, gradients, hessians),
                lambda: tf.constant(False),
            )

        return tf.cond(self.centering, lambda: self._center(gradients, hessians), grow)

    def _newton(self, g, h):
        return -tf.math.divide_no_nan(_soft(g, self.l1), h + self.l2)

    def _center(self, g, h):
        self.bias_stats.assign_add(tf.stack([tf.reduce_sum(g, 0), tf.reduce_sum(h, 0)]))
        self.batches.assign_add(1)

        def step():
            mean = self.bias_stats / tf.cast(self.batches, tf.float32)
            delta = self._newton(mean[0], mean[1])
            self.bias.assign_add(delta)
            self.bias_stats.assign(tf.zeros_like(self.bias_stats))
            self.batches.assign(0)
            self.centering.assign(tf.reduce_any(tf.abs(delta) > _CENTERING_EPSILON))
            return tf.constant(True)

        return tf.cond(self.batches >= self.n_batches_per_layer, step, lambda: tf.constant(False))

    def _grow(self, x, g, h):
        t = self.finalized_trees
        node, _ = self._walk(x, self.node_feature[t][None], self.node_threshold[t][None], self.depth)
        first = tf.bitwise.left_shift(1, self.layer) - 1
        local = node[0] - first  # the example's node among the layer's; < 0: it sits in a finished leaf
        layer_nodes, features, buckets = self.grad_stats.shape[:3]
        size = layer_nodes * features * buckets
        ids = local[:, None] * features * buckets + tf.range(features)[None, :] * buckets + x
        ids = tf.reshape(tf.where(local[:, None] >= 0, ids, size), [-1])  # the last segment: ignored

        def sums(v):  # per (node, feature, bucket): the sum of v over the batch's examples there
            per_feature = tf.reshape(tf.repeat(v, features, axis=0), [-1, self.units])
            return tf.reshape(tf.math.unsorted_segment_sum(per_feature, ids, size + 1)[:-1], self.grad_stats.shape)

        self.grad_stats.assign_add(sums(g))
        self.hess_stats.assign_add(sums(h))
        self.batches.assign_add(1)
        return tf.cond(self.batches >= self.n_batches_per_layer, self._split_layer, lambda: tf.constant(False))

    def _score(self, g, h):
        return tf.reduce_sum(tf.math.divide_no_nan(tf.square(_soft(g, self.l1)), h + self.l2), axis=-1)

    def _split_layer(self):
        t, d = self.finalized_trees, self.layer
        n = tf.cast(self.batches, tf.float32)
        g_left, h_left = tf.cumsum(self.grad_stats / n, axis=2), tf.cumsum(self.hess_stats / n, axis=2)
        g_all, h_all = g_left[:, :, -1:], h_left[:, :, -1:]
        g_right, h_right = g_all - g_left, h_all - h_left
        gain = (
            self._score(g_left, h_left)
            + self._score(g_right, h_right)
            - self._score(g_all, h_all)
            - self.tree_complexity
        )  # [nodes, features, buckets]
        weight_left, weight_right = tf.reduce_sum(h_left, -1), tf.reduce_sum(h_right, -1)
        least = max(self.min_node_weight, 0.0)
        valid = (
            self._candidates[None]
            & (weight_left > 0)
            & (weight_right > 0)
            & (weight_left >= least)
            & (weight_right >= least)
        )
        gain = tf.where(valid, gain, -np.inf)
        layer_nodes, _, buckets = gain.shape
        flat = tf.reshape(gain, [layer_nodes, -1])
        best = tf.argmax(flat, axis=1, output_type=tf.int32)
        best_gain = tf.reduce_max(flat, axis=1)
        best_f, best_b = best // buckets, best % buckets
        m = tf.range(layer_nodes)
        split = (m < tf.bitwise.left_shift(1, d)) & tf.math.is_finite(best_gain)
        if self.pruning_mode == "pre":
            split &= best_gain > 0
        at = tf.stack([m, best_f, best_b], axis=1)
        left = self._newton(tf.gather_nd(g_left, at), tf.gather_nd(h_left, at))
        right = self._newton(tf.gather_nd(g_right, at), tf.gather_nd(h_right, at))
        node = tf.boolean_mask(tf.bitwise.left_shift(1, d) - 1 + m, split)
        parent = tf.gather(self.node_value[t], node)

        def at_tree(nodes):
            return tf.stack([tf.fill(tf.shape(nodes), t), nodes], axis=1)

        self.node_feature.scatter_nd_update(at_tree(node), tf.boolean_mask(best_f, split))
        self.node_threshold.scatter_nd_update(at_tree(node), tf.boolean_mask(best_b, split))
        self.node_gain.scatter_nd_update(at_tree(node), tf.boolean_mask(best_gain, split))
        self.node_value.scatter_nd_update(
            at_tree(2 * node + 1), parent + self.learning_rate * tf.boolean_mask(left, split)
        )
        self.node_value.scatter_nd_update(
            at_tree(2 * node + 2), parent + self.learning_rate * tf.boolean_mask(right, split)
        )
        self.grad_stats.assign(tf.zeros_like(self.grad_stats))
        self.hess_stats.assign(tf.zeros_like(self.hess_stats))
        self.batches.assign(0)
        done = (d + 1 >= self.depth) | ~tf.reduce_any(split)
        self.layer.assign(tf.where(done, 0, d + 1))
        self.finalized_trees.assign_add(tf.cast(done, tf.int32))
        return tf.constant(True)


class _StopWhenGrown(SessionRunHook):
    """Ends training once the ensemble has all its trees (tf.estimator's _StopAtAttemptsHook)."""

    def __init__(self, model: TreeEnsemble):
        self._model = model

    def after_run(self, run_context, run_values):
        if int(self._model.finalized_trees.numpy()) >= self._model.n_trees:
            run_context.request_stop()


def _check(name, value, kind, least, strict=False):
    if not isinstance(value, kind) or isinstance(value, bool) or (value <= least if strict else value < least):
        raise ConfigError(f"{name} must be a {'positive' if strict else 'non-negative'} number, got {value!r}")
    return value


class BoostedTreesEstimator(PremadeEstimator):
    """Gradient-boosted trees with any head whose logits have one dimension per output."""

    def __init__(
        self,
        feature_columns,
        n_batches_per_layer,
        head,
        model_dir=None,
        weight_column=None,
        n_trees=100,
        max_depth=6,
        learning_rate=0.1,
        l1_regularization=0.0,
        l2_regularization=0.0,
        tree_complexity=0.0,
        min_node_weight=0.0,
        config=None,
        center_bias=False,
        pruning_mode="none",
        quantile_sketch_epsilon=0.01,
        train_in_memory=False,
    ):
        for name, value in (
            ("n_batches_per_layer", n_batches_per_layer),
            ("n_trees", n_trees),
            ("max_depth", max_depth),
        ):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        _check("learning_rate", learning_rate, numbers.Real, 0, strict=True)
        for name, value in (
            ("l1_regularization", l1_regularization),
            ("l2_regularization", l2_regularization),
            ("tree_complexity", tree_complexity),
            ("min_node_weight", min_node_weight),
        ):
            _check(name, value, numbers.Real, 0)
        if pruning_mode not in _PRUNING_MODES:
            raise ConfigError(
                f"pruning_mode must be one of {_PRUNING_MODES}, got {pruning_mode!r} "
                "('post' pruning is not implemented)"
            )
        if pruning_mode == "pre" and tree_complexity <= 0:
            raise ConfigError("pruning_mode='pre' needs a positive tree_complexity (as in tf.estimator)")
        if train_in_memory and n_batches_per_layer != 1:
            raise ConfigError("train_in_memory=True takes the whole data set as one batch: set n_batches_per_layer=1")
        features = TreeFeatures(feature_columns)
        units = head.logits_dimension

        def build():
            return TreeEnsemble(
                features.buckets,
                units,
                int(n_trees),
                int(max_depth),
                float(learning_rate),
                float(l1_regularization),
                float(l2_regularization),
                float(tree_complexity),
                float(min_node_weight),
                bool(center_bias),
                pruning_mode,
                int(n_batches_per_layer),
            )

        super().__init__(
            head,
            {PART: Part(features, build, None, learning_rate)},
            weight_column=weight_column,
            model_dir=model_dir,
            config=config,
        )
        self._features = features
        self._train_in_memory = bool(train_in_memory)
        self._quantile_sketch_epsilon = quantile_sketch_epsilon  # accepted; numeric columns are not taken

    def _transform_in_step(self) -> bool:
        # Always in the map: train_in_memory caches the bucketized batch, and predict with
        # explanations reads bucketized features from the dataset.
        return False

    def _dataset(self, input_fn, mode, input_context=None, raw=False):
        ds, has_labels = super()._dataset(input_fn, mode, input_context, raw)
        if self._train_in_memory and mode == ModeKeys.TRAIN:
            # The input_fn's first batch is the whole data set: bucketized once, kept in memory.
            ds = ds.take(1).cache().repeat()
        return ds, has_labels

    def _premade_model_fn(self, features, labels, mode, config, program):
        if mode != ModeKeys.TRAIN:
            return super()._premade_model_fn(features, labels, mode, config, program)
        if labels is None:
            raise ConfigError("train needs labels: the input_fn must return (features, labels)")
        self._check_weight(features, mode)
        model = program.state["models"][PART]
        labels = self._head.labels(labels)
        x = features[PART]
        logits = model(x, training=True)
        with tf.GradientTape() as outer:
            outer.watch(logits)
            with tf.GradientTape() as inner:
                inner.watch(logits)
                loss = self._head.loss(features, labels, logits)
            gradients = inner.gradient(loss, logits)
        if self._head.logits_dimension == 1:
            hessians = outer.gradient(gradients, logits)
        else:  # the diagonal of each example's hessian
            hessians = tf.linalg.diag_part(outer.batch_jacobian(gradients, logits))
        update = model.update(x, gradients, hessians)
        with tf.control_dependencies([update]):
            train_op = tf.compat.v1.train.get_global_step().assign_add(1)
        return EstimatorSpec(
            mode,
            loss=loss,
            train_op=train_op,
            training_hooks=[_StopWhenGrown(model)],
            scaffold=_scaffold({PART: model}),
        )

    # ---- what the trees learned ---------------------------------------------------------------

    def experimental_feature_importances(self, normalize=False) -> collections.OrderedDict:
        """Total split gain per feature column, largest first (normalized to sum to 1 if asked)."""
        feature = self.get_variable_value(f"{PART}/node_feature")
        gain = self.get_variable_value(f"{PART}/node_gain")
        totals = dict.fromkeys(self._features.names, 0.0)
        for f, value in zip(feature[feature >= 0], gain[feature >= 0]):
            totals[self._features.names[f]] += float(value)
        if normalize:
            whole = sum(totals.values())
            if whole <= 0:
                raise ConfigError("the trees have no splits with positive gain: nothing to normalize")
            totals = {k: v / whole for k, v in totals.items()}
        return collections.OrderedDict(sorted(totals.items(), key=lambda kv: -abs(kv[1])))

    def experimental_predict_with_explanations(self, input_fn, predict_keys=None, hooks=None, checkpoint_path=None):
        """predict(), with per example 'bias' and 'dfc' (directional feature contributions per column).

        As tf.estimator: along each example's path through the trees, the change of the prediction
        (the probability for a classifier, the value for a regressor) at each split goes to the
        split's feature column; 'bias' + the sum of 'dfc' is the prediction. One-dimensional logits only.
        """
        if self._head.logits_dimension != 1:
            raise ConfigError("explanations need one-dimensional logits (regression or binary classification)")
        path = self._require_checkpoint(checkpoint_path)
        model = self._parts[PART].build_model()
        tf.train.Checkpoint(**{PART: model}).restore(path).expect_partial()
        classifier = isinstance(self._head, heads_lib.ClassificationHead)
        activation = (lambda z: 1 / (1 + np.exp(-z))) if classifier else (lambda z: z)
        names = self._features.names
        columns = list(dict.fromkeys(names))
        column_of = np.array([columns.index(n) for n in names] + [len(columns)])  # feature -1: no column

        @tf.function
        def run(features):
            x = features[PART]
            return self._head.predictions(model(x)), *model.explain(x)

        if isinstance(predict_keys, str):
            predict_keys = [predict_keys]
        hook_list = list(hooks or [])
        for h in hook_list:
            h.begin()
        try:
            for batch in self._dataset(input_fn, ModeKeys.PREDICT)[0]:
                preds, logits_path, feature_ids = run(batch[0])
                preds = {k: v.numpy() for k, v in preds.items() if not predict_keys or k in predict_keys}
                steps = activation(logits_path.numpy()[:, :, 0])
                deltas = steps[:, 1:] - steps[:, :-1]
                for i in range(steps.shape[0]):
                    contrib = np.bincount(
                        column_of[feature_ids[i].numpy()], weights=deltas[i], minlength=len(columns) + 1
                    )[: len(columns)]
                    dfc = sorted(zip(columns, contrib.tolist()), key=lambda kv: -abs(kv[1]))
                    yield {
                        **{k: v[i] for k, v in preds.items()},
                        "bias": float(steps[i, 0]),
                        "dfc": collections.OrderedDict(dfc),
                    }
        finally:
            for h in hook_list:
                h.end(None)


class BoostedTreesClassifier(BoostedTreesEstimator):
    """Gradient-boosted trees classifier (tf.estimator.BoostedTreesClassifier)."""

    def __init__(
        self,
        feature_columns,
        n_batches_per_layer,
        model_dir=None,
        n_classes=2,
        weight_column=None,
        label_vocabulary=None,
        n_trees=100,
        max_depth=6,
        learning_rate=0.1,
        l1_regularization=0.0,
        l2_regularization=0.0,
        tree_complexity=0.0,
        min_node_weight=0.0,
        config=None,
        center_bias=False,
        pruning_mode="none",
        quantile_sketch_epsilon=0.01,
        train_in_memory=False,
    ):
        head = heads_lib.ClassificationHead(n_classes, label_vocabulary)
        super().__init__(
            feature_columns,
            n_batches_per_layer,
            head,
            model_dir,
            weight_column,
            n_trees,
            max_depth,
            learning_rate,
            l1_regularization,
            l2_regularization,
            tree_complexity,
            min_node_weight,
            config,
            center_bias,
            pruning_mode,
            quantile_sketch_epsilon,
            train_in_memory,
        )


class BoostedTreesRegressor(BoostedTreesEstimator):
    """Gradient-boosted trees regressor (tf.estimator.BoostedTreesRegressor)."""

    def __init__(
        self,
        feature_columns,
        n_batches_per_layer,
        model_dir=None,
        label_dimension=1,
        weight_column=None,
        n_trees=100,
        max_depth=6,
        learning_rate=0.1,
        l1_regularization=0.0,
        l2_regularization=0.0,
        tree_complexity=0.0,
        min_node_weight=0.0,
        config=None,
        center_bias=False,
        pruning_mode="none",
        quantile_sketch_epsilon=0.01,
        train_in_memory=False,
    ):
        head = heads_lib.RegressionHead(label_dimension)
        super().__init__(
            feature_columns,
            n_batches_per_layer,
            head,
            model_dir,
            weight_column,
            n_trees,
            max_depth,
            learning_rate,
            l1_regularization,
            l2_regularization,
            tree_complexity,
            min_node_weight,
            config,
            center_bias,
            pruning_mode,
            quantile_sketch_epsilon,
            train_in_memory,
        )
