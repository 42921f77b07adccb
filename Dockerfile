# The controller image the Helm chart runs (charts/blockflow): a virtualenv on a Python base,
# non-root (uid 10001), no build tools in the final image, fine with a read-only root filesystem.
#   docker build -t blockflow:dev .          (or: make image, which uses buildah)
# BASE: any image with Python >= 3.11 as `python3` and its venv module. The default is the public
# python:3.11-slim; the tests build FROM a Debian bookworm base made locally (hack/base-image.sh).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# CA_BUNDLE: a CA bundle mounted into the build, for networks whose TLS proxy signs PyPI's
# certificates (make image passes the host's).
ARG CA_BUNDLE
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
 && python3 -m venv /opt/blockflow \
 && /opt/blockflow/bin/pip install --no-cache-dir --disable-pip-version-check . \
 && /opt/blockflow/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

FROM ${BASE}
COPY --from=build /opt/blockflow /opt/blockflow
RUN echo 'blockflow:x:10001:10001:Blockflow:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'blockflow:x:10001:' >> /etc/group
USER 10001:10001
ENV PATH=/opt/blockflow/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080 8443
ENTRYPOINT ["blockflow"]
CMD ["controller", "--log-format", "json"]
