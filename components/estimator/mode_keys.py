"""tf.estimator's mode names."""


class ModeKeys:
    """The three modes a model_fn is called in."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"
