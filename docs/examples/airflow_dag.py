"""A daily forecasting job in Airflow: retrain weekly, forecast every night, with the `tsformers` command.

Copy this file into the DAG folder of an Airflow 2.x deployment whose workers
have tsformers installed (``pip install 'tsformers[mlflow]'``). The forecast
task reads the registered model ``demand`` at the alias ``production``; a
person (or a CI check on the backtest) moves that alias after looking at the
weekly training run in MLflow.

Exit status 2 means the input was bad (the log names the column or row): it
is not retried, since the same file fails the same way; anything else (status 1)
is retried. The forecast is written atomically, so a failed night keeps the
last good file in place.
"""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

ENV = {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000", "OMP_NUM_THREADS": "4"}
DATA = "/data/demand"

with DAG(
    dag_id="tsformers_demand_forecast",
    schedule="30 2 * * *",  # every night at 02:30, after the day's data has landed
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["forecasting"],
) as dag:
    train = BashOperator(
        task_id="train_weekly",
        # Mondays only; the other nights skip it (exit 99 marks a task skipped in Airflow).
        bash_command="[ \"$(date +%u)\" = 1 ] || exit 99; "
                     "tsformers train --config /etc/tsformers/demand.yaml --mlflow "
                     "--experiment demand --registered-model-name demand",
        skip_on_exit_code=99,
        env=ENV,
        append_env=True,
    )

    forecast = BashOperator(
        task_id="forecast",
        bash_command="tsformers forecast --model models:/demand@production "
                     f"--input {DATA}/history/latest.parquet --output {DATA}/forecast/latest.parquet",
        env=ENV,
        append_env=True,
        trigger_rule="none_failed",  # also after a skipped training
    )

    backtest = BashOperator(
        task_id="backtest",
        bash_command="tsformers backtest --model models:/demand@production "
                     f"--input {DATA}/history/latest.parquet --output {DATA}/metrics/backtest.parquet --n-windows 4",
        env=ENV,
        append_env=True,
    )

    train >> forecast >> backtest
