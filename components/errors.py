"""The error hierarchy: one `TfpipeError` root; each subclass also inherits the builtin it refines."""


class TfpipeError(Exception):
    """Root of every error tfpipe raises on purpose."""

    # AutoGraph re-raises an error from traced code with the same type only when that type's
    # __init__ is Exception's; anything else becomes a StagingError and callers lose the type.
    __init__ = Exception.__init__


class ConfigError(TfpipeError, ValueError):
    """A configuration or argument is invalid; the message says how to fix it."""


class InputError(TfpipeError, ValueError):
    """Input data or an input_fn is malformed; the message names what and where."""


class Blocked(InputError):
    """A component finished and published outputs that stop the run (an output's `blocked` property says why):
    nothing that depends on them runs. The message names the component, the problem and the fix."""


class NotTrainedError(TfpipeError, ValueError):
    """An operation needs a checkpoint and the model directory has none."""


class NanLossError(TfpipeError, RuntimeError):
    """Training produced a NaN or infinite loss."""


class ClusterError(TfpipeError, RuntimeError):
    """A task of a distributed training cluster failed or stopped answering."""


class StoreUnavailable(TfpipeError, RuntimeError):
    """The shared metadata store stopped answering mid-run; the message names it and the wait."""


class Stopped(TfpipeError):
    """A stop was asked for from outside (SIGTERM, Ctrl-C); the message says where work stopped."""


class DiskFull(TfpipeError, OSError):
    """The disk filled while a step wrote; the message says to free space and run again."""


def no_space(e: BaseException | None) -> str | None:
    """The file a full disk refused (or ""), when that is what `e` comes down to; else None. Beam and
    TensorFlow wrap the OSError in errors of their own, and SQLite (the MLMD store) says it in words, so the
    message is searched too."""
    import errno

    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e.filename or ""
        if "No space left on device" in str(e) or "database or disk is full" in str(e):
            return ""
        e = e.__cause__ or e.__context__
    return None


def disk_full(where: str) -> DiskFull:
    return DiskFull(
        f"no space left on the device{f' ({where})' if where else ''}; free some space and run again "
        "(finished steps are reused)"
    )
