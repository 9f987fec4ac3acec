"""The data contract: how raw data becomes examples, in one place.

- `types`: which values are INT, FLOAT or BYTES, and how each becomes a tf.Example value;
- `schema`: tensorflow-metadata Schema I/O, the schema built from what was seen, feature specs;
- `examples`: canonical tf.Example bytes (the same rows always give the same bytes);
- `split`: which split a row goes to;
- `labels`: the label checks across splits;
- `artifacts`: the artifact types and the files an Examples artifact holds.

Every reader (CSV, csv.gz, Parquet, TFRecord) hands its rows to these functions; none re-implements them.
"""
