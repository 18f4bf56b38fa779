# syntax=docker/dockerfile:1
# The gateway's image: nginx serving the web form (frontend/) and proxying /api/ and /avaliar to the
# evaluation API (deploy/nginx/gateway.conf). Build from the repository root (the context), e.g.:
#   docker build -f deploy/gateway.Dockerfile -t credit-eligibility/gateway:1.0.0 .
# nginx-unprivileged runs as uid 101, listens on 8080 and keeps its pid and temp files in /tmp.

# Any image laid out as nginx-unprivileged's (deploy/images/nginx.Containerfile makes one from Debian's nginx).
ARG NGINX_IMAGE=nginxinc/nginx-unprivileged:1.28-alpine
FROM ${NGINX_IMAGE}

USER root
RUN rm -rf /usr/share/nginx/html/* /etc/nginx/conf.d/*
COPY deploy/nginx/gateway.conf /etc/nginx/conf.d/default.conf
COPY frontend/ /usr/share/nginx/html/
USER 101

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
# The base image's entrypoint and command: nginx -g 'daemon off;', stopped gracefully by SIGQUIT.
