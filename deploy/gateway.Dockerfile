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
# The per-client limits, settable at start (GATEWAY_RATE_LIMIT_RPS, GATEWAY_RATE_LIMIT_BURST,
# GATEWAY_CONN_LIMIT); unset, nginx runs gateway.conf as copied above.
COPY deploy/nginx/gateway-entrypoint.sh /usr/local/bin/gateway-entrypoint.sh
USER 101

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
# The base image's command (an ENTRYPOINT resets it), run by the entrypoint; stopped gracefully by
# SIGQUIT (the base image's STOPSIGNAL), which reaches nginx: the entrypoint execs it.
ENTRYPOINT ["/usr/local/bin/gateway-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
