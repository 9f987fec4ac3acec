"""`tfpipe run CONFIG`, then a last line naming the heavy modules the run loaded (`loaded: a,b`).

bench/cached_run.py times it; tests/pipeline/test_cached_run.py checks that a cached run loads none.
"""

HEAVY = ("tensorflow", "apache_beam", "tensorflow_transform", "tf_keras", "tfx_bsl")
PROBE = (
    "import sys\nfrom pipeline.cli import main\ncode = main(['run', sys.argv[1]])\n"
    f"print('loaded:', ','.join(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(code)\n"
)
