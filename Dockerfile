FROM python:3.13-slim
ENV PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra parquet --no-install-project
COPY pocketquant ./pocketquant
COPY schema.graphql ./
RUN uv sync --frozen --no-dev --extra parquet
ENV PATH="/app/.venv/bin:$PATH"
USER nobody
CMD ["pocketquant", "--help"]
