# The ContainerPub platform image: one image for the API (the default command) and the runner
# (`npm run start:runner`). TypeScript runs through tsx, as in development: there is no build step.

# ---- dependencies: better-sqlite3 is compiled here when no prebuilt binary can be downloaded, so
# the compilers stay in this stage and out of the final image.
FROM node:20.18.1-bookworm-slim AS deps
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime
FROM node:20.18.1-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/app/data
WORKDIR /app
# Same base image as the deps stage, so the compiled better-sqlite3 matches this Node ABI.
COPY --from=deps /app/node_modules ./node_modules
# The source stays owned by root (read-only for the process); only DATA_DIR is writable.
COPY . .
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 8080
CMD ["npx", "tsx", "api/main.ts"]
