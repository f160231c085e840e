"""Batch jobs without MLflow: the pieces under the ``tsformers`` command and the MLflow model.

- :mod:`tsformers.batch.tables`: CSV and Parquet files, read whole or a chunk
  of series at a time, and written atomically.
- :mod:`tsformers.batch.jobs`: train job files (YAML or JSON) and their flags.
- :mod:`tsformers.batch.frames`: frames in and out of a saved model (future
  rows, packed series), shared by the command and :mod:`tsformers.tracking`.
- :mod:`tsformers.batch.progress`: the progress of a forecast over series.
"""


class InputError(Exception):
    """Bad input or configuration, named with its fix: the ``tsformers`` command exits 2 with this message."""
