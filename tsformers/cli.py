"""The ``tsformers`` command: ``demo`` and ``forecast``.

Every output file is written atomically (to a temporary file beside it, then
renamed), so a failed run never leaves a partial file. Bad input exits with
status 2 and a one-line message naming the problem.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tsformers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="fit a Gateformer on the built-in demo data and compare with naive")
    demo.add_argument("--horizon", type=int, default=24)
    demo.add_argument("--lookback", type=int, default=96)
    demo.add_argument("--max-epochs", type=int, default=10)
    demo.add_argument("--out", default="demo_forecast.csv", help="where to write the forecast (csv or parquet)")
    demo.add_argument("--save", default=None, help="also save the fitted model to this directory")

    forecast = commands.add_parser("forecast", help="forecast new data with a saved model")
    forecast.add_argument("--model", required=True, help="a directory written by Forecaster.save")
    forecast.add_argument("--data", required=True, help="history to forecast from (csv or parquet)")
    forecast.add_argument("--out", required=True, help="where to write the forecast (csv or parquet)")

    args = parser.parse_args(argv)
    try:
        return {"demo": run_demo, "forecast": run_forecast}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"tsformers {args.command}: error: {err}", file=sys.stderr)
        return 2


def run_demo(args) -> int:
    import numpy as np

    from tsformers import GateformerForecaster
    from tsformers.datasets import make_demo
    from tsformers.metrics import mae, mse

    df = make_demo()
    train, test = df.iloc[: -args.horizon], df.iloc[-args.horizon:]
    columns = [c for c in df.columns if c != "date"]
    print(f"demo data: {len(df)} hourly steps of {len(columns)} series; holding out the last {args.horizon}")
    started = time.perf_counter()
    model = GateformerForecaster(horizon=args.horizon, lookback=args.lookback, max_epochs=args.max_epochs,
                                 batch_size=32, learning_rate=1e-3, random_state=0).fit(train)
    print(f"fitted GateformerForecaster in {time.perf_counter() - started:.1f} s "
          f"({len(model.training_log_)} epochs)")
    forecast = model.predict()
    truth = test[columns].to_numpy()
    naive = np.repeat(train[columns].to_numpy()[-1:], args.horizon, axis=0)
    print(forecast.head(8).to_string(index=False))
    print(f"\n{'model':<22}{'MSE':>10}{'MAE':>10}")
    for name, pred in [("Gateformer", forecast[columns].to_numpy()), ("naive (last value)", naive)]:
        print(f"{name:<22}{mse(truth, pred):>10.3f}{mae(truth, pred):>10.3f}")
    write_frame(forecast, Path(args.out))
    print(f"\nforecast written to {args.out}")
    if args.save:
        print(f"model saved to {model.save(args.save)}")
    return 0


def run_forecast(args) -> int:
    from tsformers.estimators.base import BaseForecaster

    model = BaseForecaster.load(args.model)
    forecast = model.predict(read_frame(Path(args.data)))
    write_frame(forecast, Path(args.out))
    print(f"wrote {len(forecast)} rows to {args.out}")
    return 0


def read_frame(path: Path):
    """A CSV (dates parsed later by the estimator) or Parquet file as a pandas frame."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: unknown file type '{path.suffix}'; use .csv or .parquet.")


def write_frame(frame, path: Path) -> None:
    """Write a pandas or polars frame to CSV or Parquet atomically."""
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: unknown file type '{path.suffix}'; use .csv or .parquet.")
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=frame.index.name is not None)
        else:
            frame.to_parquet(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


if __name__ == "__main__":
    sys.exit(main())
