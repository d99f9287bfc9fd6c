# The load balancer in front of the directory replicas (`directory-ha` compose
# profile): Debian's haproxy on the local base image (no registry needed).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
# The stats socket's folder (read-only `show stat` from inside the container).
RUN install -d -o haproxy -g haproxy -m 700 /run/haproxy
COPY docker/directory-haproxy.cfg /etc/haproxy/haproxy.cfg
EXPOSE 8080
# SIGUSR1: finish the requests in flight (hard-stop-after in the config bounds it).
STOPSIGNAL SIGUSR1
# Debian's package made the unprivileged `haproxy` user; port 8080 needs no root.
USER haproxy
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
