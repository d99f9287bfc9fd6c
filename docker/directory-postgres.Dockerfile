# PostgreSQL for the directory's `directory-ha` compose profile, from Debian's own
# package on the local base image (no registry needed). Data in /var/lib/mesh-pg.
#   DIRECTORY_DB_PASSWORD (or DIRECTORY_DB_PASSWORD_FILE): the `directory` role's password.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/mesh-pg && chown postgres:postgres /var/lib/mesh-pg
COPY docker/directory-postgres.sh /usr/local/bin/directory-postgres
VOLUME /var/lib/mesh-pg
EXPOSE 5432
HEALTHCHECK --interval=3s --timeout=3s --start-period=20s --retries=10 \
  CMD ["sh", "-c", "pg_isready -q -h 127.0.0.1 -U directory -d directory"]
STOPSIGNAL SIGINT
ENTRYPOINT ["directory-postgres"]
