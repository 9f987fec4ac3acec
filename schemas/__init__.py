"""Raw-data schemas (tensorflow-metadata Schema text protos) and artifact type definitions."""
