# crawler: high-throughput async crawler and downloader.
#   docker build -t crawler .
#   docker run --rm -v "$PWD:/work" crawler run /work/job.yaml
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crawler ./crawler
COPY pipelines ./pipelines
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 crawler
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER crawler
WORKDIR /work
ENTRYPOINT ["crawler"]
CMD ["--help"]
