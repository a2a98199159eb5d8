# syntax=docker/dockerfile:1
# sfox-exporter image: a wheel built in one stage, installed into a slim runtime in the next.
#
#   docker build --build-arg REVISION="$(git rev-parse --short HEAD)" -t sfox-exporter .   # production
#   docker build --build-arg EXTRAS=demo -t sfox-exporter:demo .  # with the simulator, for --demo
#
#   # the key file must be readable by uid 65532, the image's user: chown 65532 sfox.key (and chmod 600),
#   # or run as yourself with --user "$(id -u)" and leave the file yours
#   docker run --read-only -p 9841:9841 \
#     -v "$PWD/config.yaml:/etc/sfox-exporter/config.yaml:ro" \
#     -v "$PWD/sfox.key:/run/secrets/sfox_main:ro" sfox-exporter
#
# Python 3.11, the minor version CI tests (.github/workflows/ci.yml), Debian bookworm, slim. Pinned by
# digest; the digest is the one public projects pin for this tag, not re-checked by a pull here (no
# Docker engine where this was written): `docker buildx imagetools inspect python:3.11.11-slim-bookworm`
# shows the current one. Update tag and digest together.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY exporter ./exporter
ARG EXTRAS=""
# The exporter and its dependencies, at the versions CI tested, as wheels for an offline install.
RUN pip wheel --constraint constraints.txt --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE}
ARG EXTRAS=""
# The source revision, shown by sfox_exporter_build_info{revision} and --version; an image has no .git.
ARG REVISION=unknown
ENV SFOX_EXPORTER_REVISION=${REVISION}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Install from the build stage's wheels without copying them into a layer, then remove pip itself:
# the running image has no compiler, no build tool and no package installer. The versions are
# pinned by construction: /wheels holds exactly one, constrained, version of each package.
# compileall makes sure the standard library is byte-compiled too (a no-op where the base image
# ships it so): with PYTHONDONTWRITEBYTECODE, every start would otherwise compile each module it
# imports afresh, which costs CPU and leaves about 1 MB of the compiler's memory in the process.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "sfox-exporter${EXTRAS:+[$EXTRAS]}" \
    && pip uninstall --yes pip setuptools wheel \
    && python -m compileall -q -j 0 /usr/local/lib \
    && groupadd --system --gid 65532 sfox \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin sfox \
    && mkdir -p /etc/sfox-exporter
USER 65532:65532
EXPOSE 9841
# Probes the exporter's own /healthz; set HEALTHCHECK_URL when it listens elsewhere.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:9841/healthz'), timeout=4)"]
ENTRYPOINT ["sfox-exporter"]
CMD ["--config.file=/etc/sfox-exporter/config.yaml"]
